"""Question audio from a user: each bad kind is one line naming the file; fixable kinds are
fixed."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from data_pipelines import question_audio
from data_pipelines.question_audio import QuestionAudioError, load_question_audio

RATE = 16000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tone(seconds: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
  t = np.arange(int(seconds * rate)) / rate  # [samples]
  return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _wav(tmp_path, name: str, wav: np.ndarray, rate: int = RATE) -> str:
  path = str(tmp_path / name)
  sf.write(path, wav, rate)
  return path


def _one_line_error(path: str, match: str, max_seconds: float = 6.0) -> str:
  with pytest.raises(QuestionAudioError, match=match) as err:
    load_question_audio(path, RATE, max_seconds)
  message = str(err.value)
  assert path in message and "\n" not in message
  return message


def test_clean_wav_passes_unchanged(tmp_path):
  tone = _tone(1.0)
  wav, notes = load_question_audio(_wav(tmp_path, "q.wav", tone), RATE, 6.0)
  assert notes == [] and wav.dtype == np.float32 and wav.shape == tone.shape
  np.testing.assert_allclose(wav, tone, atol=1e-4)  # 16-bit PCM round trip


def test_missing_corrupt_and_empty_files_are_errors(tmp_path):
  _one_line_error(str(tmp_path / "nope.wav"), "no such file")
  corrupt = tmp_path / "corrupt.wav"
  corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
  _one_line_error(str(corrupt), "cannot be decoded")
  empty = tmp_path / "empty.wav"
  empty.write_bytes(b"")
  _one_line_error(str(empty), "empty")
  _one_line_error(_wav(tmp_path, "header_only.wav", np.zeros((0,), np.float32)), "no samples")


def test_too_long_names_the_window_in_seconds(tmp_path):
  message = _one_line_error(_wav(tmp_path, "long.wav", _tone(8.0)), "longer", max_seconds=5.99)
  assert "8.0 s" in message and "5.99 s" in message
  wav, _ = load_question_audio(_wav(tmp_path, "fits.wav", _tone(5.9)), RATE, 5.99)
  assert wav.size == int(5.9 * RATE)


def test_other_rates_are_resampled_and_channels_mixed_down_and_said(tmp_path):
  stereo = np.stack([_tone(1.0, 8000), np.zeros(8000, np.float32)], axis=1)  # [samples, 2]
  wav, notes = load_question_audio(_wav(tmp_path, "st8k.wav", stereo, 8000), RATE, 6.0)
  assert wav.ndim == 1 and abs(wav.size - RATE) <= 1
  assert any("resampled from 8000 Hz to 16000 Hz" in n for n in notes)
  assert any("mixed 2 channels down to mono" in n for n in notes)
  # The mix is the channel mean: half the tone's amplitude, at the same pitch.
  assert 0.13 < np.abs(wav).max() < 0.17
  spectrum = np.abs(np.fft.rfft(wav))  # [RATE / 2 + 1] bins of 1 Hz
  assert abs(int(np.argmax(spectrum)) - 220) <= 1


def test_silent_audio_is_a_warning_not_an_error(tmp_path):
  wav, notes = load_question_audio(
      _wav(tmp_path, "silent.wav", np.zeros(RATE, np.float32)), RATE, 6.0)
  assert wav.size == RATE
  assert len(notes) == 1 and "warning" in notes[0] and "silent" in notes[0]
  quiet = _tone(1.0, amplitude=question_audio.SILENCE_RMS * 2)  # RMS = 1.4 x the threshold
  assert load_question_audio(_wav(tmp_path, "quiet.wav", quiet), RATE, 6.0)[1] == []


@pytest.mark.parametrize("make", ["missing", "long"])
def test_decode_launcher_exits_with_one_line_before_building_a_model(tmp_path, make):
  path = str(tmp_path / "q.wav")
  if make == "long":
    _wav(tmp_path, "q.wav", _tone(40.0))
  result = subprocess.run(
      [sys.executable, "-m", "launch.decode", "--config=configs/mdm.py:tiny,stage=2",
       f"--audio={path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and path in lines[0], result.stderr
  if make == "long":
    assert "5.99 s window" in lines[0]


@pytest.mark.slow  # ~25-35 s: builds and compiles a random-init speech model
def test_decode_answers_silent_stereo_8k_audio_with_notes(tmp_path, prepared_corpus):
  silent = np.zeros((8000, 2), np.float32)  # [samples, channels] at 8 kHz
  path = _wav(tmp_path, "silent.wav", silent, 8000)
  result = subprocess.run(
      [sys.executable, "-m", "launch.decode", "--config=configs/mdm.py:tiny,stage=2",
       f"--config.data.dir={prepared_corpus}", "--config.train.batch_size=8",  # random init
       f"--audio={path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  for said in ("resampled from 8000 Hz", "mixed 2 channels", "warning: the audio is silent"):
    assert said in result.stderr
  assert "answer: " in result.stdout and "nfe=" in result.stdout

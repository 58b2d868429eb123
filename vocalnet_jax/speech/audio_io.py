"""Audio files: 16-bit PCM WAV out."""
from __future__ import annotations

import numpy as np
import soundfile as sf


def write_wav(path: str, wav: np.ndarray, sample_rate: int = 16000) -> None:
  """Clips to [-1, 1] and writes 16-bit PCM."""
  sf.write(path, np.clip(np.asarray(wav, np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16")

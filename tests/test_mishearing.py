"""The mishearing channel: its counts, its rates' expectation, and a fit/replay round trip."""
import numpy as np
import pytest

from data_pipelines import mishearing

SENTENCES = ["what is the first letter of table?", "subtract 4 from 19.",
             "if this month is june, what is next month?", "which day follows monday?"]


def test_fit_counts_every_edit_of_a_minimal_alignment():
  channel = mishearing.fit([("the cat", "th cat"), ("sat", "set"), ("on", "onn")])
  assert channel.deleted == {"e": 1}
  assert channel.replaced == {"a": {"e": 1}}
  assert channel.inserted == {"n": 1}
  assert channel.pairs == 3 and channel.errors == 3
  assert channel.cer == pytest.approx(3 / 12)


def test_rates_back_off_to_the_overall_rate_with_prior_counts():
  # every 'e' dropped, nothing else: 'e' is near 1, an unseen character at the overall rate
  pairs = [(s, s.replace("e", "")) for s in SENTENCES * 5]
  channel = mishearing.fit(pairs)
  n_e, n = channel.chars["e"], channel.num_chars
  overall = n_e / n
  prior = mishearing.PRIOR
  assert channel.delete_rate("e") == pytest.approx((n_e + prior * overall) / (n_e + prior))
  assert channel.delete_rate("a") == pytest.approx(
      prior * overall / (channel.chars["a"] + prior))
  assert channel.delete_rate("Z") == pytest.approx(overall)
  assert channel.replace_rate("e") == 0 and channel.insert_rate() == 0


def test_scale_zero_is_the_identity_and_json_round_trips(tmp_path):
  channel = mishearing.fit([("the cat sat", "th kat sat t")])
  rng = np.random.default_rng(0)
  assert all(channel.corrupt(s, rng, 0.0) == s for s in SENTENCES)
  path = tmp_path / "channel.json"
  path.write_text(channel.to_json())
  assert mishearing.load(str(path)) == channel


def test_corrupt_matches_the_rates_in_expectation():
  channel = mishearing.Channel(chars={"a": 1000}, deleted={"a": 100}, replaced={"a": {"o": 50}},
                               inserted={"h": 20}, pairs=1, errors=170)
  rng = np.random.default_rng(0)
  text, scale = "a" * 200, 1.5
  outs = [channel.corrupt(text, rng, scale) for _ in range(200)]
  n = len(text) * len(outs)
  count = lambda c: sum(o.count(c) for o in outs) / n  # noqa: E731
  drop, swap, insert = (scale * channel.delete_rate("a"), scale * channel.replace_rate("a"),
                        scale * channel.insert_rate())
  # per reference 'a': kept 1 - drop - swap, 'o' swap, an 'h' after it with chance `insert`
  for observed, expected in ((count("a"), 1 - drop - swap), (count("o"), swap),
                             (count("h"), insert)):
    assert observed == pytest.approx(expected, abs=4 * np.sqrt(expected / n) + 1e-3)


def test_fit_recovers_the_rates_of_a_channel_it_replays():
  truth = mishearing.fit([(s, s.replace("e", "").replace("th", "d")) for s in SENTENCES])
  rng = np.random.default_rng(1)
  refs = SENTENCES * 300
  refit = mishearing.fit((s, truth.corrupt(s, rng)) for s in refs)
  expected_errors = sum(truth.delete_rate(c) + truth.replace_rate(c) + truth.insert_rate()
                        for s in refs for c in s)
  # a minimal alignment can merge two edits into one: the refit never counts more
  assert 0.85 * expected_errors <= refit.errors <= 1.02 * expected_errors
  assert refit.delete_rate("e") == pytest.approx(truth.delete_rate("e"), rel=0.15)


def test_load_names_the_file(tmp_path):
  with pytest.raises(ValueError, match="no such mishearing channel"):
    mishearing.load(str(tmp_path / "missing.json"))
  bad = tmp_path / "bad.json"
  bad.write_text('{"chars": {}}')
  with pytest.raises(ValueError, match=f"{bad}: not a mishearing channel"):
    mishearing.load(str(bad))


def test_the_launcher_refuses_ears_that_do_not_spell_in_one_line(tmp_path):
  import subprocess
  import sys

  from configs import ar
  (tmp_path / "config.json").write_text(ar.get_config("tiny,stage=1").to_json())
  out = subprocess.run([sys.executable, "-m", "launch.mishearing", f"--checkpoint={tmp_path}",
                        f"--out={tmp_path / 'channel'}"], capture_output=True, text=True)
  assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
  assert "its ears do not spell" in out.stderr
  assert not (tmp_path / "channel").exists()

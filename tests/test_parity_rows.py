"""The parity table compares every row with the AR row trained for as many steps."""
from __future__ import annotations

import pytest

from benchmarks import parity_rows


def _entry(seed: int, row: str, steps: int, em: float, double: float) -> dict:
  return dict(seed=seed, row=row, block_size=parity_rows.block_size(row), steps=steps,
              train_steps=6000 if "_x2" in row else 3000, exact_match=em,
              per_task={"double": double, "sort": 1.0})


def test_rows_trained_twice_as_long_meet_the_ar_row_trained_as_long():
  entries = []
  for seed in (0, 1):
    entries += [_entry(seed, "ar_pretrained", 1, 0.6, 0.8),
                _entry(seed, "ar_pretrained_x2", 1, 0.8, 1.0),
                _entry(seed, "mdm_adapted_shift_l2r_b16", 4, 0.6, 0.8),
                _entry(seed, "mdm_adapted_shift_l2r_b16", 1, 0.1, 0.0),  # S = 1: not B/4
                _entry(seed, "mdm_adapted_shift_l2r_x2_b16", 4, 0.7, 0.9)]
  rows = ["ar_pretrained", "ar_pretrained_x2", "mdm_adapted_shift_l2r_b16",
          "mdm_adapted_shift_l2r_x2_b16"]
  by_row = {s["row"]: s for s in parity_rows.summary(entries, rows)}
  assert by_row["ar_pretrained_x2"]["vs_ar_of_means"] == pytest.approx(1.0)
  assert by_row["mdm_adapted_shift_l2r_b16"]["baseline"] == "ar_pretrained"
  assert by_row["mdm_adapted_shift_l2r_b16"]["vs_ar_of_means"] == pytest.approx(1.0)
  x2 = by_row["mdm_adapted_shift_l2r_x2_b16"]
  assert x2["baseline"] == "ar_pretrained_x2"
  assert x2["vs_ar_of_means"] == pytest.approx(0.7 / 0.8)
  assert x2["per_task_minus_ar"]["double"] == pytest.approx(-0.1)


def test_a_row_without_its_ar_twin_is_left_out():
  entries = [_entry(0, "ar_pretrained", 1, 0.6, 0.8),
             _entry(0, "mdm_adapted_shift_x2_b4", 1, 0.7, 0.9)]
  assert (parity_rows.summary(entries, ["ar_pretrained", "mdm_adapted_shift_x2_b4"])
          == parity_rows.summary(entries, ["ar_pretrained"]))

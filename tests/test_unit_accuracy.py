"""Unit accuracy of a Talker against reference units, on known sequences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.diagnostics import unit_accuracy
from vocalnet_jax.training import objectives

VOCAB = 16


def test_free_running_accuracy_is_one_minus_unit_edits_over_reference_units():
  refs = [[1, 2, 3, 4], [5, 6]]
  assert unit_accuracy.unit_edit_accuracy(refs, refs) == 1.0
  # one deletion (3) and one insertion (7) over 6 reference units
  np.testing.assert_allclose(unit_accuracy.unit_edit_accuracy([[1, 2, 4], [5, 6, 7]], refs),
                             1 - 2 / 6)
  # a shifted copy: one insertion + one deletion, although no position matches
  np.testing.assert_allclose(unit_accuracy.unit_edit_accuracy([[9, 1, 2, 3], [5, 6]], refs),
                             1 - 2 / 6)
  # silence: every reference unit deleted; an empty reference is an error
  assert unit_accuracy.unit_edit_accuracy([[], [5, 6]], refs) == 1 - 4 / 6
  with pytest.raises(ValueError, match="at least one unit"):
    unit_accuracy.unit_edit_accuracy([[1]], [[]])


def _successor_fns() -> objectives.DecoderFns:
  """A decoder that predicts 'the token it was fed, plus one' at every position."""
  return objectives.DecoderFns(
      embed=lambda t: jax.nn.one_hot(t, VOCAB),  # [b, L, VOCAB]
      hidden=lambda e, p, m: e,
      logits=lambda h: jnp.roll(h, 1, axis=-1) * 10.0)


def test_teacher_forced_ar_accuracy_feeds_the_reference_before_each_unit():
  # fed [start=2, 3, 4, 5, 9]: predicts 3 4 5 6 10; the reference 3 4 5 9 10 is right 4 of 5
  # times (each prediction uses the reference before it, not its own earlier mistakes)
  response = jnp.array([[3, 4, 5, 9, 10, 0]])
  valid = jnp.array([[True] * 5 + [False]])
  batch = objectives.ResponseBatch(jnp.zeros((1, 1, VOCAB)), jnp.ones((1, 1), bool), response,
                                   valid)
  problem = objectives.LMProblem(_successor_fns(), batch, mask_id=15, eos_id=14, block_size=3,
                                 start_id=2)
  right, scored = unit_accuracy.teacher_forced_counts(problem, "ar")
  assert (float(right), int(scored)) == (4.0, 5)



def test_accuracy_by_template_groups_answers_and_weights_back_to_the_whole():
  """Each template's accuracy is its own answers'; weighted by reference units they give
  the overall accuracy (a misaligned grouping would not)."""
  refs = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
  hyps = [[1, 2, 3, 4], [], [7, 0, 9]]
  names = ["add", "spell", "add"]
  by = unit_accuracy.accuracy_by_template(hyps, refs, names)
  assert by == {"add": 1 - 1 / 7, "spell": 0.0}
  weighted = (7 * by["add"] + 2 * by["spell"]) / 9
  np.testing.assert_allclose(weighted, unit_accuracy.unit_edit_accuracy(hyps, refs))

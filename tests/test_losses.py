import jax
import jax.numpy as jnp
import numpy as np

from vocalnet_jax.diffusion import losses


def _reference_mdm(logits, targets, scored, valid, weight):
  total = 0.0
  for b in range(logits.shape[0]):
    for i in range(logits.shape[1]):
      if scored[b, i]:
        z = logits[b, i] - logits[b, i].max()
        log_p = z - np.log(np.exp(z).sum())
        total += weight[b, i] * -log_p[targets[b, i]]
  return total / valid.sum()


def test_mdm_loss_matches_direct_computation():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
  targets = rng.integers(0, 7, size=(2, 5))
  valid = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool)
  scored = (rng.random((2, 5)) < 0.5) & valid
  weight = rng.uniform(1, 4, size=(2, 5)).astype(np.float32)
  got = losses.mdm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(scored),
                        jnp.asarray(weight), jnp.asarray(valid))
  np.testing.assert_allclose(got, _reference_mdm(logits, targets, scored, valid, weight),
                             rtol=1e-5)


def test_ar_loss_is_mean_ce_over_mask():
  logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
  got = losses.ar_loss(logits, jnp.array([[0, 1]]), jnp.array([[True, False]]))
  np.testing.assert_allclose(got, np.log(2), rtol=1e-6)


def test_reverse_kl_is_kl_of_the_student_to_the_teacher():
  """KL(p_student || p_teacher) = sum p log(p / q) on hand-picked distributions (the
  swapped direction gives another number), averaged over the masked positions only."""
  p = np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]])  # student
  q = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])  # teacher
  expected = [float(np.sum(p[i] * np.log(p[i] / q[i]))) for i in range(2)]
  assert not np.isclose(expected[0], float(np.sum(q[0] * np.log(q[0] / p[0]))))
  student = jnp.log(jnp.asarray(p))[None] + 3.0  # logits: any shift per position
  teacher = jnp.log(jnp.asarray(q))[None] - 1.0
  both = jnp.ones((1, 2), bool)
  np.testing.assert_allclose(losses.reverse_kl(student, teacher, both), np.mean(expected),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.reverse_kl(student, teacher, jnp.array([[False, True]])),
                             expected[1], rtol=1e-5)
  np.testing.assert_allclose(losses.reverse_kl(student, student, both), 0.0, atol=1e-6)


def _reference_ctc_nll(log_probs: np.ndarray, labels: list[int], blank: int) -> float:
  """-log sum over every frame path that collapses (merge repeats, drop blanks) to labels."""
  import itertools
  total = 0.0
  frames, vocab = log_probs.shape
  for path in itertools.product(range(vocab), repeat=frames):
    collapsed = [s for i, s in enumerate(path) if s != blank and (i == 0 or s != path[i - 1])]
    if collapsed == labels:
      total += np.exp(sum(log_probs[t, s] for t, s in enumerate(path)))
  return -np.log(total)


def test_ctc_per_token_is_path_sum_per_label():
  """Brute force over all 4^5 paths: the NLL per valid label, padding ignored, and an example
  whose labels cannot fit its frames dropped from both sums."""
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 6, 4)).astype(np.float32)
  frames_valid = np.array([[1] * 5 + [0], [1] * 5 + [0], [1, 1, 0, 0, 0, 0]], bool)
  labels = np.array([[1, 2, 2], [3, 1, 0], [2, 2, 0]])
  labels_valid = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 0]], bool)
  log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  want = (_reference_ctc_nll(log_probs[0, :5], [1, 2, 2], 0)
          + _reference_ctc_nll(log_probs[1, :5], [3, 1], 0)) / 5  # example 2: [2, 2] needs 3 frames
  got = losses.ctc_per_token(jnp.asarray(logits), jnp.asarray(frames_valid), jnp.asarray(labels),
                             jnp.asarray(labels_valid), blank_id=0)
  np.testing.assert_allclose(got, want, rtol=1e-4)

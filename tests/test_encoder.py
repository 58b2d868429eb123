"""Audio encoder and adaptor: shapes, validity masks, padding invariance, frame grouping."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vocalnet_jax.models.decoder import scan_params
from vocalnet_jax.models.encoder import Adaptor, AudioEncoder, stack_frames

N_MELS, FRAMES = 8, 23


@pytest.fixture(scope="module", params=[2, 4], ids=["stride2", "stride4"])
def encoder_and_params(request):
  enc = AudioEncoder(embed_dim=16, num_layers=2, num_heads=4, mlp_dim=32, stride=request.param)
  params = jax.jit(enc.init)(jax.random.key(0), jnp.zeros((1, FRAMES, N_MELS)),
                            jnp.ones((1, FRAMES), bool))
  return jax.jit(enc.apply), params, request.param


def test_encoder_shapes_and_mask(encoder_and_params):
  apply, params, stride = encoder_and_params
  lengths = jnp.array([FRAMES, 11])
  mel_mask = jnp.arange(FRAMES)[None] < lengths[:, None]  # [2, 23]
  mel = np.random.RandomState(1).randn(2, FRAMES, N_MELS).astype(np.float32)
  hidden, mask = apply(params, mel, mel_mask)
  out = -(-FRAMES // stride)
  assert hidden.shape == (2, out, 16)  # ceil(23 / stride)
  valid = -(-11 // stride)  # ceil(length / stride) valid frames
  np.testing.assert_array_equal(mask.sum(-1), [out, valid])
  np.testing.assert_array_equal(mask[1], np.arange(out) < valid)
  assert np.isfinite(np.asarray(hidden)).all()


def test_whisper_stride_keeps_whisper_kernel(encoder_and_params):
  """stride 2 is Whisper's conv2 (kernel 3, what hf_import loads); stride s widens the
  kernel to 2s-1 so no input frame is skipped."""
  _, params, stride = encoder_and_params
  params = nn.meta.unbox(params)["params"]
  assert params["conv2"]["kernel"].shape[0] == 2 * stride - 1
  assert params["conv1"]["kernel"].shape[0] == 3


def test_encoder_padding_invariance(encoder_and_params):
  """Valid outputs of a padded row equal the unpadded utterance's, whatever the padding holds."""
  apply, params, _ = encoder_and_params
  length = 11
  # Frames >= length are padding with arbitrary content.
  mel = 3.0 * np.random.RandomState(2).randn(1, FRAMES, N_MELS).astype(np.float32)
  mel_mask = jnp.arange(FRAMES)[None] < length
  padded, mask = apply(params, mel, mel_mask)
  alone, alone_mask = apply(params, mel[:, :length], jnp.ones((1, length), bool))
  assert alone.shape[1] == int(mask.sum()) == int(alone_mask.sum())
  np.testing.assert_allclose(padded[:, :alone.shape[1]], alone, atol=1e-5)


def test_stack_frames_groups_and_mask():
  x = jnp.arange(2 * 12 * 3, dtype=jnp.float32).reshape(2, 12, 3) + 1.0
  mask = jnp.arange(12)[None] < jnp.array([[12], [6]])
  stacked, group_mask = stack_frames(x, mask, 5)
  assert stacked.shape == (2, 3, 15)
  # Row 0: group g holds frames 5g..5g+4 in order; frames 12..14 are zero padding.
  np.testing.assert_array_equal(stacked[0, 1], x[0, 5:10].reshape(-1))
  np.testing.assert_array_equal(stacked[0, 2], jnp.concatenate([x[0, 10:12].reshape(-1),
                                                                jnp.zeros(9)]))
  # Row 1: frame 5 is the only valid frame of group 1, the rest of the group is zeroed.
  np.testing.assert_array_equal(stacked[1, 1], jnp.concatenate([x[1, 5], jnp.zeros(12)]))
  np.testing.assert_array_equal(group_mask, [[True, True, True], [True, True, False]])


def test_adaptor_shapes_and_padding_invariance():
  adaptor = Adaptor(out_dim=24, hidden_dim=32, stack=5)
  x = np.random.RandomState(3).randn(2, 13, 16).astype(np.float32)
  mask = jnp.arange(13)[None] < jnp.array([[13], [7]])
  params = jax.jit(adaptor.init)(jax.random.key(4), x, mask)
  apply = jax.jit(adaptor.apply)
  out, out_mask = apply(params, x, mask)
  assert out.shape == (2, 3, 24)
  np.testing.assert_array_equal(out_mask, [[True, True, True], [True, True, False]])
  alone, _ = apply(params, x[1:, :7], jnp.ones((1, 7), bool))
  np.testing.assert_allclose(out[1:, :2], alone, atol=1e-6)


@pytest.mark.parametrize("policy", ["none", "full", "save_dots"])
def test_scanned_encoder_matches_unrolled(policy):
  """One nn.scan over the layers (params converted by `scan_params`), rematerialised with
  each policy, gives the unrolled encoder's outputs and gradients."""
  kw = dict(embed_dim=16, num_layers=3, num_heads=4, mlp_dim=32)
  mel = jnp.asarray(np.random.RandomState(3).randn(2, FRAMES, N_MELS), jnp.float32)
  mel_mask = jnp.arange(FRAMES)[None] < jnp.array([[FRAMES], [13]])
  unrolled = AudioEncoder(**kw)
  params = nn.unbox(unrolled.init(jax.random.key(0), mel, mel_mask)["params"])
  scanned = AudioEncoder(**kw, scan_layers=True, remat_policy=policy)
  scanned_params = scan_params(params, kw["num_layers"])
  assert scanned_params["layers"]["fc1"]["kernel"].shape == (3, 16, 32)

  def loss(model, p):  # a weighted sum, so every output position and channel matters
    hidden, mask = model.apply({"params": p}, mel, mel_mask)
    return jnp.sum(jnp.sin(hidden) * mask[..., None])

  np.testing.assert_allclose(scanned.apply({"params": scanned_params}, mel, mel_mask)[0],
                             unrolled.apply({"params": params}, mel, mel_mask)[0],
                             rtol=1e-5, atol=1e-5)
  want = scan_params(jax.grad(lambda p: loss(unrolled, p))(params), kw["num_layers"])
  got = jax.grad(lambda p: loss(scanned, p))(scanned_params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                         got, want)

"""The speech model's two training stages on a micro corpus, and the dry-run report."""
import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import ar, mdm
from data_pipelines import spelling
from vocalnet_jax.diffusion import losses
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.models.speech_llm import SpeechLLM
from vocalnet_jax.training import (objectives, spec_augment, speech_tasks, tasks, train_state,
                                   trainer)

BATCH = 8


def _config(module, stage, corpus, **train):
  c = module.get_config(f"tiny,stage={stage}")
  c.data.dir = corpus
  c.data.mel_buckets = (800,)
  c.train.update(batch_size=BATCH, log_every=1, progress_bar=False, checkpoint_every=1000,
                 **train)
  return c


def _params(workdir, config, devices):
  exp = trainer.setup_experiment(config, devices)
  return trainer.load_params(str(workdir), exp)


def _stage1(module, prepared_corpus, workdir, devices, init_from=""):
  """Two stage-1 steps on a (data 4, fsdp 2) mesh: finite losses, nonzero gradients."""
  s1 = _config(module, 1, prepared_corpus, steps=2)
  s1.mesh.update(data=4, fsdp=2)
  s1.init_from = init_from
  h1 = trainer.train(s1, str(workdir), devices=devices)
  assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in h1)
  return s1, _params(workdir, s1, devices)


def _stage2_trains_only_the_talker(module, prepared_corpus, tmp_path, devices, stage1):
  s2 = _config(module, 2, prepared_corpus, steps=2)
  s2.init_from = str(tmp_path / "s1")
  h2 = trainer.train(s2, str(tmp_path / "s2"), devices=devices)
  # weight decay alone would move params too
  assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in h2)
  stage2 = _params(tmp_path / "s2", s2, devices)
  for frozen in ("encoder", "adaptor", "thinker"):  # loaded from stage 1, then frozen
    jax.tree_util.tree_map(np.testing.assert_array_equal, stage1[frozen], stage2[frozen])
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                 stage1["talker"], stage2["talker"])
  assert max(jax.tree_util.tree_leaves(moved)) > 0
  return stage2


def test_mdm_stages_train_only_their_parts(prepared_corpus, tmp_path, devices):
  _, stage1 = _stage1(mdm, prepared_corpus, tmp_path / "s1", devices)
  _stage2_trains_only_the_talker(mdm, prepared_corpus, tmp_path, devices, stage1)


def test_cached_thinker_states_equal_recomputed_ones_and_train_the_same(prepared_corpus,
                                                                        tmp_path, devices):
  """The cache holds each answer's `thinker_states` from init_from's Thinker (looked up by
  example index); a cached stage 2 reads no audio and logs the losses of a recomputing one."""
  _stage1(ar, prepared_corpus, tmp_path / "s1", devices)
  runs = {}
  for cached in (False, True):
    s2 = _config(ar, 2, prepared_corpus, steps=2)
    s2.init_from, s2.talker.cache_thinker_states = str(tmp_path / "s1"), cached
    runs[cached] = (s2, trainer.train(s2, str(tmp_path / f"s2_{cached}"), devices=devices))
  task = tasks.build_task(runs[True][0])
  params = task.frozen_thinker_params()
  batch = next(iter(tasks.build_task(runs[False][0]).dataset("train", BATCH, 0)))
  cache = task.state_cache("train")
  assert cache.shape[0] == 24 and not np.allclose(cache[batch["index"][0]], 0.0)
  np.testing.assert_allclose(cache[batch["index"]], task.thinker_states(params, batch),
                             rtol=1e-5, atol=1e-5)
  cached_batch = next(iter(task.dataset("train", BATCH, 0)))
  assert "mel" not in cached_batch and cached_batch["thinker_states"].shape[0] == BATCH
  for a, b in zip(runs[False][1], runs[True][1]):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def test_ar_stages_0_1_2_each_train_their_parts_and_chain(prepared_corpus, tmp_path, devices):
  """Stage 0 (typed questions) moves the Thinker alone; stage 1 starts from its params (and
  the `W,thinker=W2` graft); stage 2 from stage 1 trains the Talker alone."""
  s0 = _config(ar, 0, prepared_corpus, steps=2)
  trainer.train(s0, str(tmp_path / "s0"), devices=devices)
  exp = trainer.setup_experiment(s0, devices)
  init = nn.meta.unbox(exp.task.init_params(jax.random.key(s0.seed)))
  typed = _params(tmp_path / "s0", s0, devices)
  for part in ("encoder", "adaptor", "talker", "transcriber"):  # up to init's float noise
    jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-6),
                           init[part], typed[part])
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(init["thinker"]),
                                                      jax.tree_util.tree_leaves(typed["thinker"])))
  s1, spoken = _stage1(ar, prepared_corpus, tmp_path / "s1", devices, str(tmp_path / "s0"))
  exp1 = trainer.setup_experiment(s1, devices)
  jax.tree_util.tree_map(np.testing.assert_array_equal, typed,
                         trainer.load_params(s1.init_from, exp1))
  # `W,thinker=W2` grafts W2's Thinker into W's params and leaves the other parts W's.
  grafted = trainer.load_params(f"{tmp_path / 's1'},thinker={tmp_path / 's0'}", exp1)
  for part, source in (("thinker", typed), ("encoder", spoken), ("adaptor", spoken)):
    jax.tree_util.tree_map(np.testing.assert_array_equal, source[part], grafted[part])
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(spoken["thinker"]), jax.tree_util.tree_leaves(typed["thinker"])))
  # 'thinker=W2' alone: this run's fresh params around W2's Thinker.
  fresh = jax.tree_util.tree_map(jnp.zeros_like, spoken)
  alone = trainer.load_params(f"thinker={tmp_path / 's0'}", exp1, fresh)
  jax.tree_util.tree_map(np.testing.assert_array_equal, typed["thinker"], alone["thinker"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, fresh["encoder"], alone["encoder"])
  for bad, says in ((f"{tmp_path / 's1'},thinker", "PART=WORKDIR"),
                    (f"thinker={tmp_path / 's0'},thinker={tmp_path / 's1'}", "new PART"),
                    (f"{tmp_path / 's1'},ears={tmp_path / 's0'}", "no part 'ears'")):
    with pytest.raises(ConfigError, match=says):
      trainer.load_params(bad, exp1)
  talking = _stage2_trains_only_the_talker(ar, prepared_corpus, tmp_path, devices, spoken)
  # The demo's MDM Talker starts from the AR one (`W,talker=AR2`): the AR Talker's params fit
  # the MDM stage-2 model as they are (one speech vocabulary with both special ids).
  mdm2 = _config(mdm, 2, prepared_corpus, steps=1)
  mdm2.diffusion.shift_logits = True
  from_ar = trainer.load_params(f"{tmp_path / 's1'},talker={tmp_path / 's2'}",
                                trainer.setup_experiment(mdm2, devices))
  for part, source in (("talker", talking), ("thinker", spoken), ("encoder", spoken)):
    jax.tree_util.tree_map(np.testing.assert_array_equal, source[part], from_ar[part])


@pytest.mark.parametrize("stage,valid_key", [(1, "response_valid"), (2, "answer_units_valid")])
def test_mdm_loss_scores_only_response_positions(stage, valid_key, prepared_corpus):
  task = tasks.build_task(_config(mdm, stage, prepared_corpus, steps=1))
  batch = next(iter(task.dataset("train", 4, seed=0)))
  assert ("answer_units" in batch) == (stage == 2)  # only the Talker's loader encodes units
  params = jax.jit(task.init_params)(jax.random.key(0))
  loss = jax.jit(task.loss)
  rng = jax.random.key(1)
  base, metrics = loss(params, batch, rng)
  assert np.isfinite(base) and base > 0 and metrics["target_tokens"] > 0
  # Changing the audio (prefix) changes the loss: it is context, not a target...
  noisy = dict(batch, mel=batch["mel"] + 1.0)
  assert not np.isclose(loss(params, noisy, rng)[0], base)
  # ...and with no valid response/speech position nothing is scored.
  empty = dict(batch, **{valid_key: np.zeros_like(batch[valid_key])})
  empty_loss, empty_metrics = loss(params, empty, rng)
  if stage == 1:  # the transcript's CTC term does not read the answer
    assert empty_metrics["target_tokens"] == 0 and empty_metrics["answer_loss"] == 0
    np.testing.assert_allclose(empty_loss, task.config.auxiliary.ctc_weight
                               * empty_metrics["ctc_loss"], rtol=1e-6)
  else:  # an empty answer is still "eos", filled to the end of the first chunk
    assert 0 < empty_metrics["target_tokens"] <= 4 * task.config.talker.chunk_size
    # The Talker's loss scores its speech units, not stage 1's answer and auxiliaries.
    assert not {"ctc_loss", "typed_loss", "answer_loss"} & set(metrics)
    units = dict(batch, answer_units=(batch["answer_units"] + 1) % task.speech_vocab.num_units)
    assert not np.isclose(loss(params, units, rng)[0], base)


def test_state_dropout_zeroes_thinker_states_at_its_rate(prepared_corpus):
  """`talker.state_dropout` zeroes whole positions' states at its rate; at 1 the Talker's loss
  is the loss given all-zero states (text embeddings alone), at 0 the loss is untouched."""
  hidden = jnp.ones((64, 32, 8))
  dropped = np.asarray(speech_tasks.drop_states(hidden, 0.3, jax.random.key(0)))
  per_position = dropped.sum(-1)  # [b, R]: 0 or 8, never partly zeroed
  assert set(np.unique(per_position)) == {0.0, 8.0}
  assert abs((per_position == 0).mean() - 0.3) < 0.03  # 2048 draws: sd 0.01
  config = _config(ar, 2, prepared_corpus, steps=1)
  task = tasks.build_task(config)
  batch = next(iter(task.dataset("train", 4, seed=0)))
  params = jax.jit(task.init_params)(jax.random.key(0))
  rng = jax.random.key(1)
  base = task.loss(params, batch, rng)[0]
  zero_states = task.talker_problem(params, batch,
                                    jnp.zeros_like(task.thinker_states(params, batch)))
  _, objective_rng = jax.random.split(rng)
  text_only = objectives.lm_loss(zero_states, objective_rng, "ar", config.diffusion)[0]
  config.talker.state_dropout = 1.0
  np.testing.assert_allclose(task.loss(params, batch, rng)[0], text_only, rtol=1e-6)
  assert not np.isclose(text_only, base)


def test_text_only_talker_reads_no_audio_and_keeps_the_loss_of_the_state_reading_path(
    prepared_corpus):
  """`talker.thinker_states=False`: batches carry no audio or cached states (cache asked or
  not), and the loss equals the Talker's loss given the real Thinker states, which its
  fusion zeroes."""
  config = _config(ar, 2, prepared_corpus, steps=1)
  full = tasks.build_task(config)
  batch = next(iter(full.dataset("train", 4, seed=0)))
  params = jax.jit(full.init_params)(jax.random.key(0))
  config.talker.update(thinker_states=False, cache_thinker_states=True)
  text_only = tasks.build_task(config)
  light = next(iter(text_only.dataset("train", 4, seed=0)))
  audio = set(speech_tasks.AUDIO_KEYS)
  assert set(light) == set(batch) - audio
  assert set(text_only.batch_spec(4)) == set(full.batch_spec(4)) - audio
  rng = jax.random.key(1)
  _, objective_rng = jax.random.split(rng)
  reading = text_only.talker_problem(params, batch, full.thinker_states(params, batch))
  np.testing.assert_allclose(
      text_only.loss(params, light, rng)[0],
      objectives.lm_loss(reading, objective_rng, "ar", config.diffusion)[0], rtol=1e-6)


@pytest.mark.parametrize("ctc_on", ["encoder", "adaptor"])
def test_stage1_loss_is_answer_plus_weighted_auxiliary_terms(ctc_on, prepared_corpus):
  """loss = answer + w_ctc * CTC(transcript | encoder or adapted frames) + w_typed *
  answer(typed question); each term reads only its own inputs."""
  config = _config(ar, 1, prepared_corpus, steps=1)
  config.auxiliary.update(ctc_weight=0.5, typed_weight=2.0, ctc_on=ctc_on)
  task = tasks.build_task(config)
  batch = next(iter(task.dataset("train", 4, seed=0)))
  params = jax.jit(task.init_params)(jax.random.key(0))
  loss = jax.jit(task.loss)
  total, m = loss(params, batch, jax.random.key(1))
  np.testing.assert_allclose(total, m["answer_loss"] + 0.5 * m["ctc_loss"] + 2.0 * m["typed_loss"],
                             rtol=1e-5)
  assert all(m[k] > 0 for k in ("answer_loss", "ctc_loss", "typed_loss"))
  _, noisy = loss(params, dict(batch, mel=batch["mel"] + 1.0), jax.random.key(1))
  assert noisy["typed_loss"] == m["typed_loss"] and noisy["ctc_loss"] != m["ctc_loss"]
  rolled = dict(batch, question_tokens=np.roll(batch["question_tokens"], 1, axis=0))
  _, other = loss(params, rolled, jax.random.key(1))
  assert other["answer_loss"] == m["answer_loss"] and other["ctc_loss"] != m["ctc_loss"]
  # answer_weight 0 (and typed 0) leaves the ears' CTC alone: no Thinker pass for the answer.
  config.auxiliary.update(answer_weight=0.0, typed_weight=0.0)
  total, m = jax.jit(tasks.build_task(config).loss)(params, batch, jax.random.key(1))
  assert set(m) == {"ctc_loss", "loss"} and total == 0.5 * m["ctc_loss"]


def test_adaptor_ctc_has_no_gradient_behind_frozen_ears(prepared_corpus):
  """CTC on the adapted frames reads only the encoder, the adaptor and the token
  embeddings: with those frozen (the demo's MDM Thinker) its gradient is zero everywhere,
  so the demo turns it off; with the adaptor trainable it moves the adaptor."""
  config = _config(mdm, 1, prepared_corpus, steps=1)
  config.auxiliary.update(answer_weight=0.0, typed_weight=0.0, ctc_weight=1.0, ctc_on="adaptor")
  batch = next(iter(tasks.build_task(config).dataset("train", 4, seed=0)))

  def grad_norms(frozen: str) -> dict:
    config.train.frozen = frozen
    task = tasks.build_task(config)
    params = jax.jit(task.init_params)(jax.random.key(0))
    loss = lambda p: task.loss(train_state.freeze(p, task.trainable, task.frozen),  # noqa: E731
                               batch, jax.random.key(1))[0]
    grads = jax.jit(jax.grad(loss))(params)
    return {k: float(optax.global_norm(grads[k])) for k in grads}

  assert not any(grad_norms("encoder,adaptor,thinker/embed_tokens").values())
  trained = grad_norms("encoder,thinker/embed_tokens")
  assert trained["adaptor"] > 0 and trained["encoder"] == trained["thinker"] == 0


@pytest.mark.slow
def test_procedural_typed_source_reads_fresh_typed_questions_beside_the_audio(prepared_corpus):
  """typed_source=procedural: every example carries a typed question of the train templates
  drawn by stream position (not the audio's own transcript), and the typed term reads only
  it; the Talker's batches do not carry it."""
  config = _config(ar, 1, prepared_corpus, steps=1)
  config.auxiliary.update(typed_source="procedural", typed_weight=1.0)  # default weight: 0
  task = tasks.build_task(config)
  it = iter(task.dataset("train", 4, seed=0))
  batch, later = next(it), next(it)
  typed = {k: batch["typed_" + k] for k in ("prompt", "prompt_valid", "response",
                                            "response_valid")}
  assert set(task.batch_spec(4)) <= set(batch)
  assert not np.array_equal(typed["prompt"], batch["prompt"])  # not the audio's transcript
  assert not np.array_equal(later["typed_prompt"], typed["prompt"])  # a new draw per position
  source = task.typed_source("train")
  np.testing.assert_array_equal(typed["prompt"], np.stack([source[i]["prompt"] for i in range(4)]))
  params = jax.jit(task.init_params)(jax.random.key(0))
  loss = jax.jit(task.loss)
  _, m = loss(params, batch, jax.random.key(1))
  _, own = loss(params, dict(batch, prompt=np.roll(batch["prompt"], 1, axis=0)), jax.random.key(1))
  assert own["typed_loss"] == m["typed_loss"]
  _, other = loss(params, dict(batch, typed_response=np.roll(batch["typed_response"], 1, axis=0)),
                  jax.random.key(1))
  assert other["typed_loss"] != m["typed_loss"]
  talker = _config(ar, 2, prepared_corpus, steps=1)
  talker.auxiliary.typed_source = "procedural"
  assert not any(k.startswith("typed_") for k in tasks.build_task(talker).batch_spec(4))


def test_dry_run_reports_1b_memory_on_8_device_mesh(devices):
  """1b widths (Whisper-large-v3 encoder, Llama-3.2-1B Thinker) at depth 1, fsdp=8."""
  c = mdm.get_config("1b")
  c.model.num_layers = c.encoder.num_layers = c.talker.model.num_layers = 1
  c.mesh.update(data=1, fsdp=8)
  c.train.batch_size = 8
  c.data.mel_buckets = (1000,)
  report = trainer.dry_run(c, devices)
  assert report["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1} and report["devices"] == 8
  parts = report["num_params_by_part"]
  assert parts["thinker"] == (128256 * 2048  # tied embedding
                              + 2048 * (32 + 2 * 8) * 64 + 32 * 64 * 2048  # attention
                              + 3 * 2048 * 8192 + 2 * 2048 + 2048)  # mlp, norms, final norm
  memory = report["memory_per_device_bytes"]
  trainable = sum(parts[k] for k in ("encoder", "adaptor", "thinker"))
  total_state = 4 * (sum(parts.values()) + 2 * trainable)  # f32 params + Adam mu, nu
  # fsdp=8 shards params and optimizer state: each device holds ~1/8 of it.
  assert 0.9 * total_state / 8 < memory["argument"] < 1.3 * total_state / 8


def test_train_frozen_keeps_paths_inside_the_trained_parts_fixed(prepared_corpus):
  config = _config(ar, 1, prepared_corpus, steps=1)
  config.train.frozen = "thinker/embed_tokens, encoder"
  task = tasks.build_task(config)
  assert set(task.trainable) == {"adaptor", "thinker", "encoder"}
  params = {"thinker": {"embed_tokens": {"embedding": jnp.ones(3)}, "head": jnp.ones(2)},
            "encoder": {"w": jnp.ones(2)}, "adaptor": {"w": jnp.ones(2)},
            "talker": {"w": jnp.ones(2)}}
  loss = lambda p: sum(jnp.sum(x ** 2) for x in jax.tree_util.tree_leaves(  # noqa: E731
      train_state.freeze(p, task.trainable, task.frozen)))
  grads = jax.grad(loss)(params)
  moved = {"/".join(str(k.key) for k in path): bool(jnp.any(g != 0))
           for path, g in jax.tree_util.tree_leaves_with_path(grads)}
  assert moved == {"thinker/embed_tokens/embedding": False, "thinker/head": True,
                   "encoder/w": False, "adaptor/w": True, "talker/w": False}
  opt = train_state.make_optimizer(config.train, task.trainable, task.frozen)
  updates, _ = opt.update(grads, opt.init(params), params)
  assert not jnp.any(updates["thinker"]["embed_tokens"]["embedding"])
  assert jnp.all(updates["thinker"]["head"] != 0)
  config.train.frozen = "thinker,talker"  # stage 1 never trains the Talker
  with pytest.raises(ConfigError, match="'talker'"):
    tasks.build_task(config)


@pytest.mark.parametrize("field,key", [("mel_buckets", "mel_frames"),
                                       ("max_units", "answer_units"),
                                       ("response_len", "response_tokens")])
def test_a_corpus_longer_than_the_config_fails_in_one_line_before_training(
    field, key, prepared_corpus):
  """The loader would raise mid-training on the first too-long example; the task refuses
  the corpus up front, naming the field and the corpus's longest example."""
  config = _config(ar, 1, prepared_corpus, steps=1)
  with open(os.path.join(prepared_corpus, "summary.json")) as f:
    longest = json.load(f)["max_lengths"]["train"][key]
  config.data[field] = (longest - 1,) if field == "mel_buckets" else longest - 1
  with pytest.raises(ConfigError, match=rf"config\.data\.{field}.*'train'.*{key} \({longest}\)"):
    tasks.build_task(config)
  config.data[field] = (longest,) if field == "mel_buckets" else longest
  tasks.build_task(config)  # exactly the longest example fits


def test_training_reads_the_splits_of_data_train_split(prepared_corpus, devices):
  """`data.train_split`: the trainer's batches come from the named split ("read": sentences
  read aloud), and "train+read" draws from both."""
  from data_pipelines.speech_loader import open_source, record_text
  from vocalnet_jax.modeling.build import corpus_dataset_dir
  config = _config(ar, 2, prepared_corpus, steps=1)
  config.talker.thinker_states = False
  task = tasks.build_task(config)
  tok = task.built.text_tokenizer

  def responses(split):
    source = open_source(corpus_dataset_dir(config), split)
    return {tuple(tok.encode(record_text(source[i]["answer_text"]))) + (tok.eos_id,)
            for i in range(len(source))}

  def batch_responses(batch):
    return {tuple(row[valid].tolist()) for row, valid in
            zip(np.asarray(batch["response"]), np.asarray(batch["response_valid"]))}

  read, train = responses("read"), responses("train")
  assert read and not read & train
  config.data.train_split = "read"
  assert batch_responses(trainer.setup_experiment(config, devices).example_batch) <= read
  batches = iter(task.dataset("train+read", BATCH, seed=0))
  seen = set().union(*(batch_responses(next(batches)) for _ in range(8)))
  assert seen & read and seen & train and seen <= read | train


def test_ears_that_spell_score_the_question_characters(prepared_corpus):
  """ctc_units=chars: the CTC term is the path sum of the question's spelling over the
  transcriber's frames (blank 0), and reads neither the question's tokens nor the Thinker."""
  config = _config(ar, 1, prepared_corpus, steps=1)
  config.auxiliary.update(answer_weight=0.0, typed_weight=0.0, ctc_weight=1.0,
                          ctc_on="encoder", ctc_units="chars")
  task = tasks.build_task(config)
  batch = next(iter(task.dataset("train", 4, seed=0)))
  assert batch["question_chars"].shape[1] == config.data.question_chars
  params = jax.jit(task.init_params)(jax.random.key(0))
  total, m = jax.jit(task.loss)(params, batch, jax.random.key(1))
  augmented = spec_augment.spec_augment(batch["mel"], batch["mel_valid"],
                                        jax.random.fold_in(jax.random.key(1), 1), task.augment)
  logits, frames_valid = task.model.apply({"params": params}, augmented, batch["mel_valid"],
                                          method=SpeechLLM.transcribe)
  want = losses.ctc_per_token(logits, frames_valid, batch["question_chars"],
                              batch["question_chars_valid"], spelling.BLANK)
  np.testing.assert_allclose(total, want, rtol=1e-5)
  rolled = dict(batch, question_tokens=np.roll(batch["question_tokens"], 1, axis=0))
  assert jax.jit(task.loss)(params, rolled, jax.random.key(1))[0] == total


def test_a_missing_mishearing_channel_names_the_field(tmp_path):
  import ml_collections
  from vocalnet_jax.modeling.validate import ConfigError
  from vocalnet_jax.training.speech_tasks import mishear_spec
  mishear = ml_collections.ConfigDict(dict(channel=str(tmp_path / "none.json"), fraction=0.5,
                                           max_scale=2.0))
  with pytest.raises(ConfigError, match=r"config\.data\.mishear\.channel: .*none\.json"):
    mishear_spec(mishear)
  assert mishear_spec(ml_collections.ConfigDict(dict(channel="", fraction=0.5,
                                                     max_scale=2.0))) is None

"""Iterative self-distillation of a trained MDM run: 16 -> 8 -> 4 -> 2 steps per block.

Each round trains a student (S_t / 2 steps) towards its frozen teacher (S_t steps) with
reverse KL (vocalnet_jax/distill/self_distill.py); the student is the next teacher.
Options as configs/mdm.py (`text`, `stage=2`): the distilled model is the one that
config trains (text Thinker, speech Thinker, or the Talker with its 15-unit chunks).

  python -m launch.train --config=configs/mdm.py:tiny,text --workdir=w/mdm_text
  python -m launch.distill --config=configs/distill.py:tiny,text --teacher=w/mdm_text \
      --workdir=w/distill

`--config.distill.rounds` lists the teachers' step counts; `--config.train.steps` is per
round. Each round writes W/round<r>_<S_t>to<S_s>/ (resumable like any run) and
W/rounds.json holds exact match and valid-answer rate per step budget after every round
(text Thinker).

Measured (2-core CPU, benchmarks/distill_digitsum.sh, multi-answer `digitsum` task, 300
steps per round): valid-answer rate at S=2 0.11 -> 0.82 after round 4->2 (teacher at S=4:
1.00; 600 plain MDM steps instead: 0.08), at S=1 0.65 -> 0.82 after round 2->1.
"""
import ml_collections

from configs import common


def halvings(block_size: int, smallest_student: int) -> tuple[int, ...]:
  """Teacher step counts: the largest power of two <= block, halved while the student
  (half the teacher) stays >= smallest_student: 16 -> (16, 8, 4) for students 8, 4, 2."""
  steps = 1 << (block_size.bit_length() - 1)
  out = []
  while steps // 2 >= smallest_student:
    out.append(steps)
    steps //= 2
  return tuple(out)


ROUND_STEPS = {"tiny": 300, "small": 1000, "1b": 20_000, "8b": 20_000}  # training steps per round
SMALLEST_STUDENT = {"tiny": 1, "small": 2, "1b": 2, "8b": 2}  # the last round's student steps


def get_config(arg: str | None = None):
  c = common.base_config(arg, objective="mdm")
  block = c.talker.chunk_size if c.task == "speech_talker" else c.diffusion.block_size
  rounds = halvings(block, smallest_student=SMALLEST_STUDENT.get(c.preset, 2))
  c.distill = dict(
      base_task=c.task,  # what configs/mdm.py with the same options trains
      rounds=rounds,  # the teacher's steps per block in each round
      teacher_steps=rounds[0],  # this round's teacher (set per round by launch/distill.py)
      states="confidence",  # student states: least-confident tokens masked | uniform
      commit_smoothing=1e-3,  # label smoothing of the teacher's committed tokens as targets
      init_from_round=False,  # init_from is a previous round (student) or a plain MDM run
      eval_examples=512,  # held-out prompts scored after each round (text Thinker)
  )
  c.task = "self_distill"
  c.train.steps = ROUND_STEPS[c.preset]
  c.train.learning_rate /= 10  # the student starts from a trained model
  return c


# Sections of the teacher's config.json a default distillation config takes over.
TEACHER_FIELDS = ("model", "encoder", "adaptor", "talker", "diffusion", "auxiliary", "data",
                  "seed")


def for_teacher(saved: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The default config distilling a run whose config.json is `saved`: the preset and task
  from its run, its model, decoder and data as it trained them (ValueError: no decoder)."""
  if saved.task not in common.SPEECH_TASKS and saved.task != "text_lm":
    raise ValueError(f"trained task {saved.task!r}; distill a text, speech Thinker or "
                     "Talker run")
  option = ("text" if saved.task == "text_lm" else
            f"stage={common.SPEECH_TASKS.index(saved.task)}")
  c = get_config(f"{saved.preset},{option}")
  for key in TEACHER_FIELDS:
    if key in saved:
      c[key] = saved[key]
  return c

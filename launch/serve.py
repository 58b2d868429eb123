"""Talk to a trained model: a WebSocket server and a page, streaming text and audio back.

  python -m launch.serve --checkpoint=demo_out/ar_stage2 --checkpoint=demo_out/mdm_stage2 \
      --vocoder=demo_out/vocoder/vocoder          # then open http://127.0.0.1:8000/
  make serve                                      # the same, for the demo's checkpoints

Each --checkpoint is a stage-2 training workdir (or a launch.export directory) and is
served under its objective's name (`ar`, `mdm`): a page asks both side by side. MDM's S
and commit rule are chosen per question (defaults --steps, --rule); each new pair compiles
once. The protocol is in docs/serving.md. Binds to 127.0.0.1 unless --host says otherwise.
A bad checkpoint or vocoder is one line on stderr and exit status 1.
"""
import asyncio
import sys

from absl import app, flags

from launch.logs import quiet_logging
from vocalnet_jax.decoding import step_rules
from vocalnet_jax.modeling import run_config
from vocalnet_jax.modeling.validate import ConfigError
from vocalnet_jax.serving import engine as engine_lib
from vocalnet_jax.serving import server as server_lib

_CHECKPOINT = flags.DEFINE_multi_string(
    "checkpoint", None, "Stage-2 workdir or export; repeat for AR and MDM.", required=True)
_VOCODER = flags.DEFINE_string("vocoder", None, "Vocoder directory (train_vocoder's W/vocoder).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (default: this machine "
                            "only).")
_PORT = flags.DEFINE_integer("port", 8000, "Port (0: any free one, printed).")
_STEPS = flags.DEFINE_integer("steps", 0, "Default MDM steps per block (0: the config's).")
_RULE = flags.DEFINE_enum("rule", "topk", step_rules.RULES, "Default MDM commit rule.")
_MAX_ACTIVE = flags.DEFINE_integer("max_active", 4, "Answers decoded at once (interleaved, "
                                   "the one nearest to a listener waiting first).")
_MAX_WAITING = flags.DEFINE_integer("max_waiting", 16, "Questions waiting for a slot; more are "
                                    "refused with a busy error.")
_MAX_BYTES = flags.DEFINE_integer("max_bytes", server_lib.MAX_BYTES,
                                  "Largest question audio file (bytes).")


def checkpoint_config(workdir: str):
  """The config a --checkpoint was trained (or exported) with."""
  config = run_config.read(workdir)
  if config is None:
    raise ConfigError(f"--checkpoint={workdir} has no {run_config.FILENAME}: give a stage-2 "
                      "training workdir or a launch.export directory")
  return config


def main(argv):
  del argv
  quiet_logging()
  try:
    engine = engine_lib.load_engine(_CHECKPOINT.value, _VOCODER.value, checkpoint_config,
                                    _STEPS.value, _RULE.value)
    server = server_lib.Server(engine, _MAX_ACTIVE.value, _MAX_WAITING.value, _MAX_BYTES.value)
  except (ConfigError, ValueError) as e:
    sys.exit(f"error: {e}")  # one line naming the checkpoint, vocoder or flag; exit status 1
  print(f"models: {', '.join(engine.pipelines)}; compiling...", flush=True)
  engine.warm_up()
  try:
    asyncio.run(server_lib.serve(server, _HOST.value, _PORT.value))
  except KeyboardInterrupt:
    pass


if __name__ == "__main__":
  app.run(main)

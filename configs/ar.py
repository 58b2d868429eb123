"""AR baseline: the same networks trained with the causal next-token loss.

Same presets and options as `configs/mdm.py` (`stage=0`, `stage=2`, `text`).

  python -m launch.train --config=configs/ar.py:tiny,stage=0 --workdir=w/ar0
  python -m launch.train --config=configs/ar.py:tiny --config.init_from=w/ar0 --workdir=w/ar1
  python -m launch.train --config=configs/ar.py:tiny,text --workdir=w/ar_text
  python -m launch.train --config=configs/ar.py:tiny,text,pretrain --workdir=w/pre
(`pretrain`: the broad procedural text mix every Thinker, AR or MDM, starts from.)
"""
from configs import common


def get_config(arg: str | None = None):
  return common.base_config(arg, objective="ar")

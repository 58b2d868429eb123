"""AR baseline: the same networks trained with the causal next-token loss.

  python -m launch.train --config=configs/ar.py:tiny --workdir=/tmp/ar
"""
from configs import common


def get_config(arg: str | None = None):
  return common.base_config(arg, objective="ar")

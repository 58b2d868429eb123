"""VocalNet-MDM: block-diffusion training with hierarchical block-wise masking.

Options after the preset: `stage=0` (the Thinker alone on typed questions of the corpus),
`stage=1` (default: speech question -> text, encoder + adaptor + Thinker),
`stage=2` (Talker: Thinker states -> speech units, one block = one 15-unit chunk),
`text` (the Thinker alone on a procedural text QA task, no speech data needed).

  python -m launch.prepare_data --config=configs/data.py:tiny --out=demo_out/data
  python -m launch.train --config=configs/mdm.py:tiny --workdir=w/mdm1
  python -m launch.train --config=configs/mdm.py:tiny,stage=2 --config.init_from=w/mdm1 \
      --workdir=w/mdm2
  python -m launch.train --config=configs/mdm.py:tiny,text --workdir=w/text
  python -m launch.train --config=configs/mdm.py:tiny --config.diffusion.masking=uniform ...

The defaults are the recipe that reached parity with AR (configs/common.py MDM_RECIPE:
shifted logits, every block's first token scored), meant for an MDM Thinker adapted from
an AR model; the whole chain is one named recipe (docs/recipes.md):
  python -m launch.recipe --recipe=configs/recipes/text_parity.py --workdir=w/parity
or by hand:
  python -m launch.train --config=configs/ar.py:tiny,text,pretrain --workdir=w/pre
  python -m launch.train --config=configs/mdm.py:tiny,text --config.init_from=w/pre \
      --workdir=w/mdm_text
Measured results: benchmarks/results/ and the README (benchmarks/mdm_parity.sh).
"""
from configs import common


def get_config(arg: str | None = None):
  return common.base_config(arg, objective="mdm")

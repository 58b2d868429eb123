# Sourced by the device_*.sh scripts: on a lent accelerator machine (no network) the
# packages its image lacks travel as wheels in .whl/ (grain, array_record, ml_collections,
# portpicker, tensorboardX, orbax-checkpoint and flax pinned as in setup.cfg); install
# them next to the image's jax and put the repository on the path.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$PWD/.whl/site" .whl/*.whl || exit 1
  export PYTHONPATH=$PWD/.whl/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

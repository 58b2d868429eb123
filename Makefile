# Two commands on a fresh machine with python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_DIR ?= demo_out
DEMO_ARG ?=  # recipe knobs, e.g. `make demo DEMO_ARG=seed=1,stage1_steps=2000`

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# Main job end to end on the embedded corpus: data -> tokenizers -> train (AR + MDM) -> decode -> WAV.
# The recipe configs/recipes/demo.py; a rerun resumes it (docs/recipes.md).
demo: $(STAMP)
	$(PY) -m launch.recipe --recipe=configs/recipes/demo.py$(if $(strip $(DEMO_ARG)),:$(strip $(DEMO_ARG))) \
	  --workdir=$(DEMO_DIR)

# The linter (ruff, configured in pyproject.toml), then the whole suite (slow tests included)
# with 8 fake CPU devices for real sharding; two pytest workers (a test module stays in one
# worker, so module fixtures are built once).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -q -ra -n 2 \
	  --dist loadscope tests

clean:
	rm -rf $(VENV) $(DEMO_DIR) workdirs

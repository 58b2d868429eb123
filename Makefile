# Two commands on a fresh machine with python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DEMO_DIR ?= demo_out

.PHONY: demo test install clean serve browser-test

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

# Talk to the demo's models: a page on http://127.0.0.1:8000/ (AR and MDM side by side).
serve: $(STAMP)
	$(PY) -m launch.serve --checkpoint=$(DEMO_DIR)/ar/stage2 --checkpoint=$(DEMO_DIR)/mdm/stage2 \
	  --vocoder=$(DEMO_DIR)/vocoder/vocoder

# Debian's Chromium, then the page's test in it (fake microphone, text shown, audio played).
browser-test: $(STAMP)
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -q -ra \
	  tests/test_serve.py -k browser

clean:
	rm -rf $(VENV) $(DEMO_DIR) workdirs

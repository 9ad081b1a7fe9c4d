# Two commands for a newcomer: `make demo` and `make test` (each installs into .venv first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch first, so nothing pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,examples,plots]'
	# auto-lirpa 0.3 pins torch<1.13: install without its pins; verikit/engines/lirpa_compat.py adapts it
	$(PY) -m pip install -q --no-deps auto-lirpa==0.3
	# optional: VNN-LIB 2.0 reader (no wheel on some platforms; verikit says so when it is missing)
	$(PY) -m pip install -q -e '.[vnnlib2]' || echo "note: VNN-LIB 2.0 support not installed (optional)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m verikit.demo

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis reports/demo

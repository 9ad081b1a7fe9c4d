# Two commands for a newcomer: `make demo` and `make test` (each installs into .venv first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test fuzz bench-acasxu bench-mnistfc bench-side-by-side conformance clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch first, so nothing pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,examples,plots,ray,sdp,qp]'
	# auto-lirpa 0.3 pins torch<1.13: install without its pins; verikit/engines/lirpa/compat.py adapts it
	$(PY) -m pip install -q --no-deps auto-lirpa==0.3
	# optional: VNN-LIB 2.0 reader (no wheel on some platforms; verikit says so when it is missing)
	$(PY) -m pip install -q -e '.[vnnlib2]' || echo "note: VNN-LIB 2.0 support not installed (optional)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/verikit demo

test: install
	$(PY) -m pytest

# The whole hostile-input corpus plus FUZZ_EXAMPLES seeded mutations per input class, every command as a
# subprocess (`make test` runs a fast subset in tests/test_fuzz.py). Counts land in benchmarks/results/fuzz.json.
FUZZ_EXAMPLES ?= 25
fuzz: install
	$(PY) benchmarks/fuzz.py --examples $(FUZZ_EXAMPLES) --jobs 2
	# float-rounding soundness (issue 25): every verified answer checked against exact rationals
	$(PY) -m verikit.apps.soundness.float_fuzz --count $(FUZZ_EXAMPLES) --timeout 5 --out benchmarks/results/float_fuzz.json

# Benchmarks (slow; not part of `make test`). Numbers land in benchmarks/results/.
bench-acasxu: install
	benchmarks/vnncomp.sh acasxu --jobs 2

bench-mnistfc: install
	benchmarks/vnncomp.sh mnistfc --jobs 2 $(MNISTFC_ARGS)

# verikit against nnenum, one process per instance (SIDE_ARGS e.g. `--every 3 --burn`; FAMILY=mnistfc)
NNENUM := ../.peers/nnenum-venv/run_instance.sh
FAMILY ?= acasxu
bench-side-by-side: install
	test -x $(NNENUM) || ../shared/peers/setup_nnenum.sh
	$(PY) benchmarks/side_by_side.py $(FAMILY) $(SIDE_ARGS)

conformance: install
	$(PY) -m pip install -q vnnlib-satisfactory==1.0.1
	$(PY) benchmarks/conformance.py --timeout 60 --sweep-unclaimed

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis reports/demo

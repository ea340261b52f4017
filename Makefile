# tinygen developer entry points.
#   make demo    set up, build the KWS model for the emulated default board and run it under QEMU
#   make test    the test suite (what CI runs; with CMSIS_NN_PATH set the cmsis-nn tests run too)
#   make test-unit  the fast lane: no TensorFlow, compiler or emulator (< 1 min)
#   make lint    ruff
#   make bench   benchmarks: arena vs TFLM, scoreboard
#   make fuzz / sanitize / soak / sweep   bounded robustness runs (CI runs them too)
PY := .venv/bin/python
PIP := .venv/bin/pip
APT_PACKAGES := gcc gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang chromium make git
MODEL ?= ../shared/models/mlperf-tiny/kws_ref_model.tflite
BOARD ?= mps2-an505
PROJECT ?= tinygen_project

FUZZ_TIME ?= 60

.PHONY: setup apt venv demo test test-unit test-fast lint bench fuzz sanitize soak sweep report supported-ops clean sweep-quick

setup: apt venv

# System packages (Debian): cross compiler, newlib, QEMU, clang (libFuzzer), chromium (report test).
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: .venv/.installed

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[tf,dev]"
	touch $@

demo: setup
	.venv/bin/tinygen build $(MODEL) --board $(BOARD) -o $(PROJECT)
	.venv/bin/tinygen run $(PROJECT)

# PYTEST_ARGS: e.g. -n 2 (pytest-xdist) on CI
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -q -m unit

test-fast: venv
	$(PY) -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check tinygen tests benchmarks fuzz

bench: setup
	$(PY) benchmarks/arena_vs_tflm.py
	@if [ -f benchmarks/scoreboard.py ]; then $(PY) benchmarks/scoreboard.py; fi
	CMSIS_NN_PATH=$${CMSIS_NN_PATH:-../shared/deps/CMSIS-NN-7.0.0} $(PY) benchmarks/speed.py

# Bounded fuzzing: the TFLite loader (atheris) and the device's bench protocol parser (libFuzzer).
fuzz: setup
	$(PY) fuzz/fuzz_flatbuffer.py -max_total_time=$(FUZZ_TIME)
	$(PY) -m pytest -q tests/test_robustness.py
	$(MAKE) -C fuzz fuzz-bench FUZZ_TIME=$(FUZZ_TIME)

# Generated C of every test model under ASan + UBSan with arena guard words (~4 min).
sanitize: setup
	$(PY) fuzz/run_sanitizers.py

# 1,000 bench iterations over the emulated board's serial port with 1% of frames corrupted.
soak: setup
	$(PY) benchmarks/soak.py

# 228 semantic mutations of the shared models, accepted ones under ASan + UBSan (~7 min).
sweep: setup
	$(PY) fuzz/hostile_sweep.py

sweep-quick: setup
	$(PY) fuzz/hostile_sweep.py --quick

supported-ops: venv
	$(PY) -m tinygen.ops > SUPPORTED_OPS.md
	$(PY) -m tinygen.kernels > docs/kernels.md

clean:
	rm -rf $(PROJECT) .pytest_cache build

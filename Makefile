# EquiBench: every target bootstraps .venv from pyproject.toml when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
EQB := $(VENV)/bin/equibench
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-faults test-bench test-all bench train-embedded smoke clean tune-steps calibrate calibration

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(EQB) run configs/demo.yaml --store runs/demo
	$(EQB) report --store runs/demo --demo --out report

smoke: $(STAMP)
	$(EQB) run configs/smoke.yaml --store runs/smoke

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not faults" -p no:cacheprovider

test-faults: $(STAMP)
	$(PY) -m pytest -q -m "faults" -p no:cacheprovider

test-bench: $(STAMP)
	$(PY) -m pytest -q tests/test_benchmarks_quick.py tests/test_gpu_script.py -p no:cacheprovider

test-all: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# The embedded world's tuning pipeline, all on the tune split: step sizes -> configs/tuned.yaml
# (the shared defaults of run and solve), then lambda influence -> per-solver lambda ranges.
tune-steps: $(STAMP)
	$(EQB) tune configs/tune-weights.yaml --store runs/tune-weights --out report/tune-weights
	$(EQB) tune configs/tune-steps.yaml --store runs/tune-steps --out report/tune-steps
	$(EQB) tune configs/tune-steps-pixel.yaml --store runs/tune-steps-pixel --out report/tune-steps-pixel
	$(PY) -m orchestrator.defaults configs/tuned.yaml report/tune-steps/best-config.yaml \
		report/tune-steps-pixel/best-config.yaml report/tune-weights/best-config.yaml

calibrate: $(STAMP)
	$(EQB) run configs/calibrate-lambda.yaml --store runs/calibrate
	$(EQB) calibrate --store runs/calibrate --run calibrate-lambda --out report/calibrate-lambda

# Posterior calibration on the exact-posterior world (mog8): every solver x {none, Equi, EquiCon} x 3
# steps x 2 linear tasks x 8 measurements x 128 samples, scored against the exact posterior.
calibration: $(STAMP)
	rm -rf runs/calibration
	$(EQB) run configs/calibration.yaml --store runs/calibration
	$(EQB) report --store runs/calibration --layout calibration --format md csv --out report/calibration

train-embedded: $(STAMP)
	$(EQB) train-embedded --parallel

clean:
	rm -rf runs report/*.png report/*.pdf .pytest_cache

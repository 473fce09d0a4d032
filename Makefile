# One command sets up and runs the main job offline (make demo); one sets up and runs the tests (make test).
# Set-up is a local venv with exact pins from constraints.txt (torch 2.13.0 CPU build; see install notes there).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup setup-extras procgen memory-gym demo test test-slow test-gpu lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The optional env families on top of setup: `make test` does not need them (their tests skip with this line).
setup-extras: setup
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,envs]'
	$(PY) -m pip install -q --no-deps -r requirements/procgen.txt -r requirements/memory-gym.txt

# Procgen and memory-gym: their metadata pins older numpy/gymnasium than rise runs, so exact pins with --no-deps (docs/envs.md)
procgen: setup
	$(PY) -m pip install -q --no-deps -r requirements/procgen.txt

memory-gym: setup
	$(PY) -m pip install -q --no-deps -r requirements/memory-gym.txt

demo: setup
	$(PY) pipelines/quickstart.py

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

test-gpu: setup
	$(PY) -m pytest -q -m gpu

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf runs/quickstart

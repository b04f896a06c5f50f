# Two entry points, each creating the virtual environment idempotently:
#   make demo   set up, then run the main job on the embedded defaults
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FER_KERAS_DATA ?= ../shared/datasets/fer2013
export FER_KERAS_DATA

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: setup demo test
setup: $(BIN)/.installed

demo: setup
	$(BIN)/python -m fer_keras.train --config experiments/configs/quick_demo.yaml

test: setup
	$(BIN)/python -m pytest

# Two entry points, each creating the virtual environment idempotently:
#   make demo   set up the runtime, then run the main job on the embedded defaults
#   make test   set up everything (the train and dev extras too), then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The runtime alone (no TensorFlow): what the demo needs, and proof that it is enough.
$(BIN)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed: $(BIN)/.runtime
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $@

.PHONY: setup demo test
setup: $(BIN)/.installed

# Emotions of every face in the bundled clip, with the bundled model: writes demo_out/
# (annotated/hamilton_clip.mp4, detections.csv, detections.jsonl, summary.json, timelines).
demo: $(BIN)/.runtime
	$(BIN)/python -m fer_keras.detect --source fer_keras/resources/sample/hamilton_clip.mp4 --out demo_out --annotate

test: setup
	$(BIN)/python -m pytest

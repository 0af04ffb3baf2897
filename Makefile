# The two jobs of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PIP    := $(VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/bin/python
	$(PIP) -e '.[torch,keras]'

install-test: $(VENV)/bin/python
	$(PIP) -e '.[torch,keras,test,bench]'

demo: install
	$(VENV)/bin/onnx-fuser demo

test: install-test
	$(VENV)/bin/python -m pytest -q

.PHONY: install install-test demo test

# Two entry points: `make demo` and `make test`. Both create .venv from requirements.txt first
# and install the project into it (pip install -e .).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test parity venv clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# the project itself, editable: importable from any folder, commands (kpanim-*) on the venv's PATH
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests

parity: venv
	$(PY) ../shared/parity/check.py ../shared/parity

demo: venv
	$(PY) demo.py --example

clean:
	rm -rf $(VENV) example-output

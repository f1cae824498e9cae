# Two commands matter: `make demo` and `make test`. Both install first, into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO   ?= runs/demo

.PHONY: install demo test lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m batcher run jobs/demo.jsonl --emulator --config jobs/examples/demo.config.yaml \
		--ledger $(DEMO)/ledger.jsonl --out $(DEMO)/outputs
	$(PY) -m batcher report $(DEMO)/ledger.jsonl -o $(DEMO)/report.html

lint: install
	$(PY) -m ruff check batcher tests bench
	$(PY) -m ruff format --check batcher tests bench

typecheck: install
	$(PY) -m mypy

unit: install
	$(PY) -m pytest -q

test: lint typecheck unit

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache

# Two commands matter: `make demo` and `make test`. Both install first, into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO   ?= runs/demo
OLDEST ?= .venv-oldest

.PHONY: install demo test test-oldest lint typecheck unit bench clean

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

# The suite on the oldest releases pyproject.toml allows: every runtime dependency at its lower
# bound exactly (">=" read as "=="), the dev tools as `make install` has them. Not part of CI
# (time); run it after raising a bound or using a newer API of a dependency.
$(OLDEST)/.installed: pyproject.toml
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
		assert all(d.count(">=") == 1 and "," not in d for d in deps), deps; \
		print("\n".join(d.replace(">=", "==") for d in deps))' > $(OLDEST)/minimums.txt
	$(OLDEST)/bin/python -m pip install --quiet -r $(OLDEST)/minimums.txt -e '.[dev]'
	touch $@

test-oldest: $(OLDEST)/.installed
	@echo "runtime dependencies at their lower bounds: $$(tr '\n' ' ' < $(OLDEST)/minimums.txt)"
	$(OLDEST)/bin/python -m pytest -q

# Every benchmark in turn (about 25 minutes on 2 cores; throughput alone is 18), going on past
# one that misses its target, then exit 1 if any did. One at a time: see README, Performance.
BENCHES := overhead memory soak status_speed manifest_memory throughput

bench: install
	@failed=""; for b in $(BENCHES); do \
		echo "== bench/$$b.py"; $(PY) bench/$$b.py || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "missed or failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) $(OLDEST) runs .pytest_cache .mypy_cache .ruff_cache

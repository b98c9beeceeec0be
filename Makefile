# portfolio_sim — a newcomer needs `make run` (or `make dashboard`) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= runs/baseline
HOST   ?= 127.0.0.1
PORT   ?= 8765

.PHONY: run test dashboard bench venv clean help

help:
	@echo "make run        - create .venv, install, run the baseline scenario into $(OUT)/"
	@echo "make test       - create/update .venv with test extras and run the test suite"
	@echo "make dashboard  - serve the policymaker dashboard on http://$(HOST):$(PORT) (HOST=, PORT= to change)"
	@echo "make bench      - run the benchmark suite, write benchmarks/results.json"
	@echo "make clean      - remove .venv, caches and run outputs"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-install whenever pyproject.toml changes (the stamp is older than it).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dashboard: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[dashboard]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[test]"
	touch $@

# Front-end assets for the dashboard, from the npm registry (the page must render offline).
$(VENV)/.assets: dashboards/setup_assets.py $(VENV)/.installed-dashboard
	$(BIN)/python dashboards/setup_assets.py
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/portfolio-sim run baseline --seeds 3 --out $(OUT)

dashboard: $(VENV)/.installed-dashboard $(VENV)/.assets
	$(BIN)/python dashboards/serve.py --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test $(VENV)/.assets
	@bash .ci/system-deps
	@$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15; status=$$?; bash .ci/system-deps --report; exit $$status

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs results benchmarks/results.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

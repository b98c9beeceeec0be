# portfolio_sim — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= runs/baseline

.PHONY: run test venv clean help

help:
	@echo "make run    - create .venv, install, run the baseline scenario into $(OUT)/"
	@echo "make test   - create/update .venv with test extras and run the test suite"
	@echo "make clean  - remove .venv, caches and run outputs"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-install whenever pyproject.toml changes (the stamp is older than it).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/portfolio-sim run baseline --seeds 3 --out $(OUT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

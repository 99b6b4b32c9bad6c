# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

$(BIN)/target-tiktok-audiences: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --group dev -e .
	touch $@

install: $(BIN)/target-tiktok-audiences

demo: install
	bash scripts/ensure-postgres
	$(BIN)/python demo/run_demo.py

test: install
	bash scripts/ensure-postgres
	$(BIN)/python -m pytest -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) tiktok-audiences-output .pytest_cache .ruff_cache

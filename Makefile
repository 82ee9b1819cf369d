# The README's two commands are the contract: `make run` and `make test`.
# `make install` makes .venv with the project (editable) and its dev
# dependencies; every other target depends on it. The stamp file makes it a
# no-op until pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 2121
WORKERS ?= 4
ROOT ?= $(CURDIR)/var/ftp-root

.PHONY: install venv run test check lint format typecheck bench bench-quick clean

install: $(STAMP)

venv: install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	mkdir -p $(ROOT)
	$(BIN)/ftp-cluster start --workers $(WORKERS) --host $(HOST) --port $(PORT) --root $(ROOT) $(ARGS)

test: install
	$(BIN)/pytest -q

check: install lint typecheck

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	bench/install-peers.sh
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

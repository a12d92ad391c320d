# Two commands for a newcomer: `make run` (the main job on the embedded elec2 stream)
# and `make test` (the whole test suite). Both set up a virtual environment first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench system-deps

# `make run` needs the runtime dependencies only; `make test` (and lint, bench) adds the
# dev extra (test tools, the tansu broker, schemathesis, tritonclient, moto).
$(BIN)/.runtime: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(BIN)/.installed: $(BIN)/.runtime
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

run: $(BIN)/.runtime
	$(BIN)/streamcl run --config config/default.yaml

# promtool and prometheus (Debian package `prometheus`) are used by the metrics tests, and
# headless Chromium (Debian package `chromium`) by the dashboard tests.
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus chromium >/dev/null; }

test: $(BIN)/.installed system-deps
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check streamcl connectors tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/prequential.py

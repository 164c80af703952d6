# The two set-up commands: `make demo` and `make test`. Both bootstrap a fresh machine:
# they install uv if needed, then the locked dependencies into .venv.
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen

.PHONY: demo test lint typecheck unit bench install clean

.venv/.synced: uv.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced

demo: install
	$(RUN) bastion up --demo

test: install lint typecheck unit

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy

unit: install
	$(RUN) pytest

bench: install
	$(RUN) python benchmarks/run.py

clean:
	rm -rf .venv .bastion .mypy_cache .ruff_cache .pytest_cache

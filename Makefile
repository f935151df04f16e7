# One command to set up and test, one to set up and run the demo (see README.md).
PY    ?= python3
VENV  ?= .venv
BIN   := $(VENV)/bin
# CPU build by default; GPU users: make setup TORCH="torch" (after installing the CUDA wheel, see README)
TORCH ?= torch==2.13.0

.PHONY: setup test test-system-packages demo bench

$(BIN)/coalqa: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/coalqa

# lint first (seconds), then every test; the edit-test loop is `$(BIN)/python -m pytest -m "not slow"` (see README)
test: setup test-system-packages
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest

# chromium + CJK font (browser test) and Go (Ollama template test); installed with apt-get when run as root
test-system-packages:
	@bash scripts/test-system-packages.sh

demo: setup
	$(BIN)/coalqa demo

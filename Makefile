# logsieve: `make setup` then `make test` on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned and installed first so pip takes the CPU wheel on disk,
# not a multi-GB CUDA build pulled by a looser range.
TORCH_PIN := torch==2.13.0

.PHONY: setup test test-all bench bench-accuracy lint typecheck run clean

setup: $(BIN)/logsieve

$(BIN)/logsieve: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# A test that hangs (a socket never answered, an event loop never woken) fails after
# 15 minutes with its stack printed, instead of holding CI until its own limit.
test: setup
	$(BIN)/pytest -q --timeout 900
	$(MAKE) --no-print-directory typecheck

# mypy strict over every package with its installed name (logsieve.engine, ...). mypy
# has no notion of setuptools' package-dir, so it checks a tree of links laid out as
# the installed package: engine/, export/ and agent_plugin/ inside logsieve/.
TYPED := .cache/typed
typecheck: setup
	@rm -rf $(TYPED) && mkdir -p $(TYPED)/logsieve
	@for f in logsieve/*; do ln -s "$(CURDIR)/$$f" $(TYPED)/logsieve/; done
	@for d in engine export agent_plugin; do ln -s "$(CURDIR)/$$d" $(TYPED)/logsieve/$$d; done
	cd $(TYPED) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/.mypy_cache -p logsieve

bench: setup
	$(BIN)/pytest bench -q --benchmark-columns=min,mean,median,ops --benchmark-sort=name

# Accuracy of every method on every dataset of $(DATA) the harness supports (hours at the
# default sizes). A smoke run: make bench-accuracy ACCURACY_ARGS="--tiny --seeds 1"
DATA ?= ../shared/data
ACCURACY_OUT ?= bench/accuracy.md
ACCURACY_ARGS ?= --seeds 3
bench-accuracy: setup
	$(BIN)/python -m logsieve.export.evaluation.harness --data-root $(DATA) --out $(ACCURACY_OUT) \
		$(ACCURACY_ARGS)

lint: setup typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

run: setup
	$(BIN)/logsieve demo

clean:
	rm -rf $(VENV) .cache build *.egg-info .pytest_cache .mypy_cache .ruff_cache

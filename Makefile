# Two entry points on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: run test demo bench lint schemas clean redis-server chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TSTAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e clients/python
	touch $@ $(STAMP)

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package; renders the offline reports in a test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP)
	$(BIN)/learnloop serve

test: $(TSTAMP) redis-server chromium
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m runtime.demo

bench: $(TSTAMP)
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/loop.py

lint: $(TSTAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy schemas learnloop app join_service online_learner offline_learner runtime devtools
	$(BIN)/mypy --strict clients/python/learnloop_client

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) data .pytest_cache

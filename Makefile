# One way to set up and run each thing; the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intentstream demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy model online_learning

# Debian's Chromium, for the test that opens a rendered report headless; kcat,
# the third-party client the tests produce with as a shop's own tools would; and
# Prometheus, whose promtool unit-tests the alert rules and whose server evaluates
# them against live workers (tests/integration/test_alerts.py; the tests start their
# own on a free port, whatever service the package starts under systemd).
CHROMIUM := /usr/bin/chromium
KCAT := /usr/bin/kcat
PROMTOOL := /usr/bin/promtool
$(CHROMIUM) $(KCAT) $(PROMTOOL):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium kcat prometheus

test: lint $(CHROMIUM) $(KCAT) $(PROMTOOL)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/e2e_throughput.py

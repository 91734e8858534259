# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The demo's webserver port: `make demo PORT=3100`, or `export DAGSTER_PORT=3100`, which
# `recon trigger` reads too. A port in use is an error, never a silent move to another one.
PORT ?= $(or $(DAGSTER_PORT),3000)

.PHONY: install install-dev demo web test validate benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What the demo needs (runtime dependencies only); install-dev adds the test tools.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# A dg project (pyproject.toml [tool.dg]): one ReconciliationComponent over recon_pipelines/demo/specs.
demo: install $(DAGSTER_HOME)/dagster.yaml
	@$(BIN)/python -c "import socket; socket.create_server(('127.0.0.1', $(PORT))).close()" 2>/dev/null || \
		{ echo "make demo: port $(PORT) is in use; try make demo PORT=3100 (and DAGSTER_PORT=3100 for recon trigger)" >&2; exit 2; }
	RECON_DAGSTER_URL="$${RECON_DAGSTER_URL:-http://127.0.0.1:$(PORT)}" $(BIN)/dg dev --port $(PORT)  # run links in notifications

# The triage page (docs/web.md) on the demo's tracker, with a local demo user (operator).
web: install
	@$(BIN)/recon users list | grep -q '^demo ' || echo demo-password | $(BIN)/recon users add demo --role operator --password-stdin
	$(BIN)/recon web --port 8080

test: install-dev
	$(BIN)/pytest

validate: install
	$(BIN)/dg check defs
	$(BIN)/dagster definitions validate -m recon_pipelines.definitions

benchmark: install-dev
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .dagster_home .recon *.egg-info

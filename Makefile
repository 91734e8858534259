# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo web test validate benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m recon_pipelines.definitions

# The triage page (docs/web.md) on the demo's tracker, with a local demo user (operator).
web: install
	@$(BIN)/recon users list | grep -q '^demo ' || echo demo-password | $(BIN)/recon users add demo --role operator --password-stdin
	$(BIN)/recon web --port 8080

test: install
	$(BIN)/pytest

validate: install
	$(BIN)/dagster definitions validate -m recon_pipelines.definitions

benchmark: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .dagster_home .recon *.egg-info

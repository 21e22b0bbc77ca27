# airflow-ml-provider developer entry points. `make test` works on a fresh machine of ours:
# it installs system packages, builds the venv, starts the services the tests need (from the
# test fixtures), and runs ruff, mypy and pytest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test unit integration lint system venv bench clean-testbed demo demo-markdown images compose-up compose-down

test: system venv lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: system venv
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Debian packages: Jersey 1 for the HDFS test bed's WebHDFS, krb5 headers for Kerberos extras,
# docker.io + mmdebstrap for the Docker bed, chromium for the browser tests.
system:
	bash scripts/system_deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/check_pyspark.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,kerberos,dev]'
	$(PY) scripts/check_pyspark.py --fix
	touch $(STAMP)

# ml_pipeline end to end through a real scheduler, on embedded defaults (SQLite source and ERP,
# local storage, Spark local[*], a local MLflow server, the local Docker engine); all under .demo/.
demo: system venv
	$(PY) scripts/demo.py

# The markdown_pricing pipeline once under dag.test() (local dockerd, synthetic data).
demo-markdown: system venv
	$(PY) scripts/demo_markdown.py

bench: system venv
	$(PY) -m bench

clean-testbed:
	rm -rf .testbed

# Docker test bed: dockerd + single-node swarm + the base/train images, built locally (no registry).
images: system venv
	$(PY) -m scripts.testbed.docker_bed ensure

# The docker-compose.yaml stack on free ports with its own .env (scripts/testbed/compose_bed.py);
# `docker-compose up -d --build` with a .env from `python -m scripts.compose_env` is the manual way.
compose-up: images
	$(PY) -m scripts.testbed.compose_bed up

compose-down: venv
	$(PY) -m scripts.testbed.compose_bed down

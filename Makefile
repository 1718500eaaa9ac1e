# pledgewatch: `make demo` and `make test` work on a fresh machine (Python >= 3.11, Java 17+, Maven).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test test-unit test-integration lint typecheck bench cta-history madison broker-start broker-stop sample clean

help:
	@echo "make demo   - venv, local Kafka, worker, replay of real bus data with an outage; Ctrl-C stops all"
	@echo "make test   - venv, local Kafka, the whole suite (unit + integration on the real broker)"
	@echo "make lint / typecheck / broker-start / broker-stop / clean"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,rocksdb]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	bash deploy/demo.sh

test: venv
	bash deploy/test.sh

test-unit: venv
	$(BIN)/pytest tests/unit monitor rules streams -q

test-integration: venv
	bash deploy/test.sh tests/integration

lint: venv
	$(BIN)/ruff check monitor rules streams tests benchmarks examples deploy/grafana
	$(BIN)/ruff format --check monitor rules streams tests benchmarks examples deploy/grafana
	$(BIN)/mypy

typecheck: venv
	$(BIN)/mypy

# all benchmarks (< 20 min): results in benchmarks/results/, the table in docs/benchmarks.md; starts the local
# broker unless KAFKA_BOOTSTRAP_SERVERS names one, and stops what it started
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	bash deploy/bench.sh

# the real-history acceptance run (CTA 2001-2024): JSON summary + the figure in docs/img (needs matplotlib)
cta-history: venv
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	$(BIN)/python examples/cta/history.py

# the Madison week: three loans on BusTime route groups over 9 days of real polls read in place from
# ../shared (JSON summary in benchmarks/results/madison_week.json); --inject and --out via ARGS="..."
madison: venv
	$(BIN)/python examples/madison/week.py $(ARGS)

broker-start:
	bash deploy/kafka/broker.sh start && bash deploy/kafka/broker.sh wait 90

broker-stop:
	bash deploy/kafka/broker.sh stop

sample: venv
	$(BIN)/python examples/make_sample.py

clean:
	-bash deploy/kafka/broker.sh stop
	rm -rf .kafka .pledgewatch .pytest_cache .mypy_cache .ruff_cache

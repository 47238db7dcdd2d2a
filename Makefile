# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install deps kafka-jars browser-deps sdk-deps promtool bench-deps demo test test-unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

deps:
	bash deploy/ensure-system-deps.sh

kafka-jars: deps
	bash deploy/kafka/kafka-local.sh fetch

browser-deps:
	bash deploy/ensure-browser-deps.sh

sdk-deps:
	bash deploy/ensure-sdk-deps.sh

## Prometheus' promtool at a pinned version, built with Go (cold: minutes; then cached).
promtool:
	bash deploy/ensure-promtool.sh

bench-deps:
	bash deploy/ensure-bench-deps.sh

## End to end on the embedded defaults: Kafka + collector + worker + sink + demo traffic + summary.
demo: install kafka-jars
	$(BIN)/pulse demo $(ARGS)

## The whole test suite, against a real Kafka broker and real chDB.
test: install kafka-jars browser-deps sdk-deps promtool
	$(BIN)/python -m pytest -p no:cacheprovider -ra $(ARGS)

test-unit: install
	$(BIN)/python -m pytest -q tests/unit tests/contract

bench: install kafka-jars bench-deps
	$(BIN)/python bench/collector_bench.py
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/sink_bench.py

clean:
	bash deploy/kafka/kafka-local.sh stop || true
	rm -rf .pulse

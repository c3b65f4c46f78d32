# DataFlow: `make run` starts everything; `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test bench soak setup setup-test services browser promtool lint

$(BIN)/flask: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/pytest: pyproject.toml $(BIN)/flask
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/flask

setup-test: $(BIN)/pytest

## run: web on http://localhost:$${PORT:-8000} and the worker; SQLite, local files, embedded Redis by default
run: setup
	$(BIN)/flask --app wsgi serve

## services: start PostgreSQL and Redis on loopback if they are down (test and CI machines)
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
	  echo "starting Redis"; \
	  mkdir -p /var/lib/redis /var/log/redis; \
	  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
	    --dir /var/lib/redis --logfile /var/log/redis/ci.log; \
	  for i in $$(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; }

## browser: Debian's Chromium for the browser tests (Playwright cannot download its own here)
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## promtool: Debian's Prometheus tools, which check deploy/'s alert rules and dashboard queries
promtool:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## test: set up, start what is down, run the whole suite
test: setup-test services browser promtool
	$(BIN)/pytest -q

## bench: the benchmark, printing ratios against raw COPY and cp measured in the same run
##        (ARGS=--huge adds a 10,000,000-row file; wrk loads the API when apt can install it)
bench: setup-test services
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
	  || echo "wrk is not available: a Python client loads the API instead"
	$(BIN)/python -m bench $(ARGS)

## soak: about 200 imports while a chaos loop kills workers and web processes, restarts Redis and
##       drops database connections; bounded to 15 minutes (ARGS="--minutes 5" for a shorter run)
soak: setup-test services
	$(BIN)/python -m bench.soak $(ARGS)

lint: setup-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

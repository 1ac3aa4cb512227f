# course-signup: `make run` starts the service on the embedded database, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test test-fast browser migrate lint bench bench-rush fault-drills lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e '.[dev]'
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(PIP) install -c constraints.txt -e '.[dev,bench]'
	@touch $@

run: $(VENV)/.installed   ## start the API (embedded SQLite unless COURSE_SIGNUP_DATABASE_URL is set)
	$(BIN)/course-signup serve

test: $(VENV)/.installed-dev browser nginx   ## the whole suite: unit, API (SQLite + PostgreSQL), integration, browser
	$(BIN)/pytest

browser:   ## Debian's chromium for the portal's browser tests (Playwright drives it; it downloads no browser)
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed and could not be: the browser tests will be skipped (they fail under CI=true)"

test-fast: $(VENV)/.installed-dev   ## unit tests only: no servers needed
	$(BIN)/pytest tests/unit

migrate: $(VENV)/.installed
	$(BIN)/course-signup migrate

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench loadtest

bench: $(VENV)/.installed-bench   ## benchmark on the local PostgreSQL beside its floors (pgbench, hello, floor app) and the rush; BENCH_ARGS=--quick
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } || true
	@if command -v wrk >/dev/null; then $(BIN)/python bench/run.py $(BENCH_ARGS); \
	 else echo "wrk not installable here: using the asyncio load generator"; \
	      $(BIN)/python bench/run.py --loadgen asyncio $(BENCH_ARGS); fi

bench-rush: $(VENV)/.installed-bench   ## a registration rush in database mode and in queue mode, with 2 and 4 API processes (own database, redis-server, vhost)
	$(BIN)/python bench/rush_modes.py $(BENCH_ARGS)

fault-drills: $(VENV)/.installed-dev   ## on private servers: restart PostgreSQL under heavier load, kill Redis, kill an API process; prints a report
	FAULT_DRILL_CLIENTS=64 FAULT_DRILL_LOAD_SECONDS=5 $(BIN)/pytest -s -q tests/integration/test_fault_drills.py

lock: $(VENV)/.installed-bench   ## re-pin constraints.txt from the current virtual environment
	@{ head -n 2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^course-signup'; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

.PHONY: stack stack-down nginx

stack: $(VENV)/.installed nginx   ## nginx in front of two API processes (and the worker when ADMISSION=queue) on the local PostgreSQL, Redis and RabbitMQ; prints the URL. STACK_ARGS=--port 8080
	$(BIN)/python deploy/stack/stack.py up $(STACK_ARGS)

stack-down:   ## stop exactly what `make stack` started (by the PIDs in .stack/), within 30 s
	$(BIN)/python deploy/stack/stack.py down $(STACK_ARGS)

nginx:   ## Debian's nginx for `make stack` and its test (installed with apt when run as root; the stack runs its own master process, never the system service)
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && apt-get install -y -qq nginx >/dev/null; } || \
	  echo "nginx is not installed and could not be: make stack cannot run, and the stack test is skipped (it fails under CI=true)"

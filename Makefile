# The commands a newcomer needs. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps run phone test test-sqlite test-postgres bench migrations clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Serve the gateway on its embedded defaults: SQLite in var/, SMS to the console.
run: install
	$(PY) -m gateway migrate
	$(PY) -m gateway seed
	$(PY) -m gateway run

## A terminal phone that dials the running gateway (make run in another terminal).
phone: install
	$(PY) -m gateway phone --msisdn 0987542228

## The whole suite: on SQLite, then again on a real PostgreSQL server it starts itself.
## Real peers come from Debian (PostgreSQL, Kannel): installed when missing (needs root).
test: system-deps test-sqlite test-postgres

system-deps:
	bash .ci/system-deps.sh

test-sqlite: install
	GATEWAY_TEST_DATABASE_URL= GATEWAY_TEST_EXPECT_DATABASE=sqlite $(PY) -m pytest -q

## Fails (and runs nothing) when the server did not start or gave no URL: the suite must
## not quietly fall back to SQLite. The suite also checks GATEWAY_TEST_EXPECT_DATABASE.
POSTGRES_CI ?= bash .ci/postgres.sh
test-postgres: install
	exports="$$($(POSTGRES_CI) start)" || { echo "test-postgres: PostgreSQL did not start" >&2; \
	    $(POSTGRES_CI) stop; exit 1; }; \
	unset GATEWAY_TEST_DATABASE_URL; eval "$$exports"; \
	case "$${GATEWAY_TEST_DATABASE_URL:-}" in \
	  postgres://*|postgresql://*) ;; \
	  *) echo "test-postgres: no PostgreSQL URL from $(POSTGRES_CI) start (got '$${GATEWAY_TEST_DATABASE_URL:-}')" >&2; \
	     $(POSTGRES_CI) stop; exit 1 ;; \
	esac; \
	export GATEWAY_TEST_DATABASE_URL GATEWAY_TEST_EXPECT_DATABASE=postgres; \
	$(PY) -m pytest -q; status=$$?; $(POSTGRES_CI) stop; exit $$status

## Benchmarks (ratios against a baseline measured in the same run).
bench: install
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(PY) -m bench.ussd
	$(PY) -m bench.sms
	$(PY) -m bench.sync
	$(PY) -m bench.alerts

## After changing a model: write the migration that follows it.
migrations: install
	$(PY) -m tortoise -c models.db.TORTOISE_ORM makemigrations

clean:
	rm -rf $(VENV) var *.egg-info

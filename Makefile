# Two commands for a fresh machine:
#   make demo   - install (requirements-dev.txt, which includes requirements.txt), build the embedded database, run one night offline on the bundled sample papers
#                 (emails land in var/outbox/), then serve http://localhost:8000
#   make test   - install, lint (ruff, compose file, mypy), check migrations, run the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# The test suite runs in production mode when DATABASE_URL is set, which needs a secret key.
TEST_SECRET_KEY ?= test-only-secret-key-4f0c9b1e8d2a7c6b5a4f3e2d1c0b9a8f7e6d5c4b

.PHONY: demo test install lint serve clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# docker-compose.yml against the compose specification (the schema ships with check-jsonschema).
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-$(TEST_SECRET_KEY)} $(BIN)/mypy

test: install lint
	DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-$(TEST_SECRET_KEY)} $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-$(TEST_SECRET_KEY)} $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var staticfiles

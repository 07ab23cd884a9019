# The two commands of README.md: `make demo` runs the main job on the local stack,
# `make test` runs the whole test suite (.ci/run calls it). Both set up what they need.
.PHONY: setup demo test unit integration lint format up down status clean

VENV ?= .venv
BIN := $(VENV)/bin
RTML := $(BIN)/rtml
DEMO_SECONDS ?= 60
DEMO_RATE ?= 2000

setup:
	@./scripts/setup.sh

demo: setup
	@./scripts/demo.sh $(DEMO_SECONDS) $(DEMO_RATE)

test: setup lint
	$(BIN)/pytest tests/unit tests/integration

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up: setup
	$(RTML) infra up

down:
	$(RTML) infra down

status:
	$(RTML) infra status

clean: down
	rm -rf $(VENV) .pytest_cache .ruff_cache

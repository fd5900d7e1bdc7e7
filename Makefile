# The two commands of the README: `make run` (the default experiment) and `make test`.
.PHONY: setup run test bench-quick
ARGS ?=
PYTEST_ARGS ?=

setup:
	@./scripts/setup.sh

run: setup
	.venv/bin/corolla run $(ARGS)

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

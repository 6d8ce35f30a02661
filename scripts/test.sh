#!/usr/bin/env bash
# Runs omnicli's checks and tests on a fresh machine: environment, installs, helpers,
# then lint (ruff), format check, types (mypy --strict) and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k e2e -x).
EXTRAS=dev OMNI_TEST_TOOLS=1 source "$(dirname "$0")/env.sh"
echo "ruff check, ruff format --check, mypy" >&2
.venv/bin/ruff check --quiet omnicli tests scripts
.venv/bin/ruff format --check --quiet omnicli tests scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Runs omnicli's tests on a fresh machine: environment, installs, helpers, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k e2e -x).
EXTRAS=dev source "$(dirname "$0")/env.sh"
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# A whole video call on this machine: embedded server, auto-answering peer, synthetic
# media. Extra arguments go to `omni demo` (e.g. scripts/demo.sh --duration 5 --no-window).
source "$(dirname "$0")/env.sh"
exec .venv/bin/omni demo "$@"

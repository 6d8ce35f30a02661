#!/usr/bin/env bash
# Runs every benchmark (about 10 minutes) and writes out/bench/*.json; each compares
# with a baseline measured in the same run (see docs/performance.md).
# "scripts/bench.sh --quick" runs short versions of each (a minute or two).
EXTRAS=dev source "$(dirname "$0")/env.sh"
py=.venv/bin/python
if [ "${1:-}" = "--quick" ]; then
  runs=(
    "bench_startup.py --runs 3"
    "bench_setup.py --calls 5"
    "bench_server.py --sessions 200,1000 --step-seconds 1 --max-pairs 16 --redis-sessions 1000 --idle-hold 10"
    "bench_media.py --sizes 640x480 --fps 10,30 --seconds 3 --warmup 1 --codecs VP8"
    "bench_audio.py --seconds 4 --rounds 1"
    "bench_terminal.py --frames 60 --seconds 3"
    "bench_hostile.py --quick"
    "bench_network.py --scenarios loss5,cap300 --seconds 4 --warmup 2"
    "bench_longcall.py --minutes 0.5 --every 5 --calls 100"
    "bench_sip.py --calls 3 --seconds 3"
  )
else
  runs=(
    "bench_startup.py"
    "bench_setup.py"
    "bench_server.py --redis-sessions 10000"   # 50,000 (the default) alone: several minutes
    "bench_media.py"
    "bench_audio.py"
    "bench_breakdown.py"
    "bench_terminal.py"
    "bench_hostile.py"
    "bench_longcall.py --minutes 2 --calls 1000"   # --minutes 30 for the real thing
    "bench_network.py"   # these two build network namespaces (need root)
    "bench_sip.py"       # Janus, kamailio and baresip in a namespace
  )
fi
failed=()
for run in "${runs[@]}"; do
  echo "== scripts/$run" >&2
  # shellcheck disable=SC2086
  $py scripts/$run || failed+=("$run")
  echo
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi

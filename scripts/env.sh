# Sourced by scripts/*.sh: makes .venv with omnicli installed (EXTRAS selects extras),
# and, when run as root on Debian, installs the system libraries it needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# System packages, in two sets. What a call needs (scripts/demo.sh and any `omni`):
# PortAudio for sounddevice, GL/GLib for OpenCV's window.
SYSTEM_PACKAGES=(libportaudio2 libgl1 libglib2.0-0)
if [ "${OMNI_TEST_TOOLS:-0}" = 1 ]; then  # set by scripts/test.sh: what the tests add
  # Xvfb for the window tests, Chromium as a real browser peer for the protocol tests.
  SYSTEM_PACKAGES+=(xvfb xauth chromium)
  # Devices for tests: a private PulseAudio (virtual mic/speaker), screenshots and keys for Xvfb.
  SYSTEM_PACKAGES+=(pulseaudio pulseaudio-utils libasound2-plugins imagemagick xdotool)
  # A real terminal for the terminal-video tests (half blocks and sixel, under Xvfb).
  SYSTEM_PACKAGES+=(xterm)
  # The network-impairment test (scripts/netlab.py): namespaces, nftables loss, iptables
  # NFQUEUE delay, and what pip needs to build NetfilterQueue.
  SYSTEM_PACKAGES+=(iproute2 nftables iptables procps libnetfilter-queue-dev gcc)
  # A real TURN server for the relay test (tests/server/test_turn_relay.py).
  SYSTEM_PACKAGES+=(coturn)
  # sipcall tests: the Janus gateway (its SIP plugin), baresip (a real SIP phone) and
  # kamailio (a SIP registrar), in tests/support/{janus,baresip,kamailio}.py. The tests
  # start their own, in a network namespace.
  SYSTEM_PACKAGES+=(janus baresip-core kamailio)
  # Redis for the many-node server tests (tests/support/redisd.py starts a private one).
  SYSTEM_PACKAGES+=(redis-server)
fi
if [ "${OMNI_LIST_PACKAGES:-0}" = 1 ]; then  # say what would be installed, and stop
  echo "${SYSTEM_PACKAGES[*]}"
  exit 0
fi
APT_LOG="${TMPDIR:-/tmp}/omnicli-apt.log"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]} (log: $APT_LOG)" >&2
    {
      apt-get -o DPkg::Lock::Timeout=300 update -qq
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${missing[@]}"
    } >"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; echo "apt-get failed" >&2; exit 1; }
    for service in janus kamailio; do  # the packages enable system daemons; tests run their own
      if [[ " ${missing[*]} " == *" $service "* ]]; then
        { systemctl stop "$service"; systemctl disable "$service"; } >/dev/null 2>&1 || true
        { service "$service" stop; update-rc.d "$service" disable; } >/dev/null 2>&1 || true
      fi
    done
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-${EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  .venv/bin/python -c "import omnicli, aiortc, typer" || { echo "install failed" >&2; exit 1; }
  touch "$stamp"
fi

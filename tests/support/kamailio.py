"""kamailio as a plain SIP registrar and proxy inside a SipLab (`janus.py`).

No authentication, no database: REGISTER is saved in memory, an INVITE for a
registered user (any domain) is proxied to its contact, in-dialog requests follow the
route set. Debian package `kamailio` (`scripts/env.sh` installs it)::

    registrar = Kamailio(lab)          # sip:10.78.0.1:5080
    ... omni server --sip-registrar registrar.uri
"""

from __future__ import annotations

import shutil
import subprocess
import time

from janus import SipLab

MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:{addr}:{port}
alias="{addr}:{port}"
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
modparam("usrloc", "db_mode", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    record_route();
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


def unavailable() -> str | None:
    if shutil.which("kamailio") is None:
        return "kamailio is not installed (apt-get install --no-install-recommends kamailio)"
    return None


class Kamailio:
    """One kamailio process listening on `lab.addr:port` (UDP)."""

    def __init__(self, lab: SipLab, port: int = 5080) -> None:
        self.lab = lab
        self.uri = f"sip:{lab.addr}:{port}"
        conf = lab.dir / "kamailio.cfg"
        conf.write_text(CONFIG.format(addr=lab.addr, port=port, modules=MODULES))
        self.log = lab.dir / "kamailio.log"
        with open(self.log, "w") as out:
            self.proc = lab.popen(
                ["kamailio", "-f", str(conf), "-DD", "-E", "-Y", str(lab.dir), "-m", "32"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while "SO_RCVBUF is finally" not in self.log.read_text(errors="replace"):  # bound
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

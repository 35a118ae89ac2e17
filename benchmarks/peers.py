"""The other POP3 clients the benchmarks run beside popctl, each configured privately.

Every peer gets its own files under a scratch directory (its own HOME, rc file, UID list, mail
destination), connects to 127.0.0.1 on the port it is given (Dovecot's plain port or the delay
proxy in front of it) and logs in with USER/PASS, as popctl does with ``--auth USER``. All of them
come from Debian: ``apt-get install -y mpop fetchmail mailfilter getmail6``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Account:
    user: str
    password: str


# The peers to run (benchmarks/run.py --peers); None: every one installed.
SELECTED: set[str] | None = None
# The Python that runs the poplib loop: run.py sets popctl's own, so both start alike.
PYTHON = sys.executable


def available(name: str) -> bool:
    if SELECTED is not None and name not in SELECTED:
        return False
    if name in ("poplib", "floor"):
        return True
    return shutil.which({"getmail6": "getmail"}.get(name, name)) is not None


def version(name: str) -> str:
    import subprocess

    binary = shutil.which({"getmail6": "getmail"}.get(name, name))
    if binary is None:
        return "not installed"
    flag = {"mailfilter": "--version", "fetchmail": "--version"}.get(name, "--version")
    result = subprocess.run([binary, flag], capture_output=True, text=True, check=False,
                            timeout=30)
    text = (result.stdout + result.stderr).splitlines()
    for line in text:
        for word in line.replace(",", " ").split():
            if word[:1].isdigit() and "." in word:
                return word
    return text[0] if text else "?"


def _private(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def mpop(scratch: Path, port: int, account: Account, deliver_to: Path) -> tuple[list[str], Path]:
    """mpop downloading everything (keep on, only_new off) into the Maildir ``deliver_to``."""
    scratch.mkdir(parents=True, exist_ok=True)
    uidls = scratch / "uidls"
    uidls.unlink(missing_ok=True)
    rc = _private(scratch / "mpoprc", f"""\
defaults
tls off
auth user
account bench
host {HOST}
port {port}
user {account.user}
password {account.password}
uidls_file {uidls}
delivery maildir {maildir(deliver_to)}
keep on
only_new off
""")
    return ["mpop", "-C", str(rc), "-q", "bench"], scratch


def mpop_killsize(scratch: Path, port: int, account: Account, size: str) -> list[str]:
    """``mpop --killsize``: delete what is larger than ``size``, skip (keep) everything else."""
    command, _ = mpop(scratch, port, account, scratch / "unused-maildir")
    return [*command[:-1], f"--killsize={size}", "--skipsize=0", "--keep=off", "bench"]


def fetchmail(scratch: Path, port: int, account: Account) -> tuple[list[str], Path]:
    """fetchmail fetching everything (keep, fetchall) to a BSMTP file: its cheapest local
    delivery (no MDA process per message)."""
    scratch.mkdir(parents=True, exist_ok=True)
    home = scratch / "fetchmailhome"
    home.mkdir(mode=0o700, exist_ok=True)
    out = scratch / "fetched.bsmtp"
    out.unlink(missing_ok=True)
    local = pwd.getpwuid(os.getuid()).pw_name
    rc = _private(scratch / "fetchmailrc", f"""\
set no syslog
set logfile {scratch / "fetchmail.log"}
poll {HOST} service {port} protocol POP3 auth password
  user "{account.user}" there with password "{account.password}" is "{local}" here
  sslproto ''
  keep fetchall
  bsmtp {out}
""")
    return ["fetchmail", "-f", str(rc), "--nodetach", "--silent"], out


def getmail6(scratch: Path, port: int, account: Account, deliver_to: Path) -> list[str]:
    """getmail6 (SimplePOP3Retriever, read_all, no delete) into the Maildir ``deliver_to``.
    As root it must deliver as another user: nobody."""
    scratch.mkdir(parents=True, exist_ok=True)
    getmaildir = scratch / "getmail"
    if getmaildir.exists():
        shutil.rmtree(getmaildir)
    getmaildir.mkdir()
    maildir(deliver_to)
    as_user = ""
    if os.geteuid() == 0:
        as_user = "user = nobody\n"
        nobody = pwd.getpwnam("nobody")
        for path in (deliver_to, *deliver_to.iterdir()):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    _private(getmaildir / "getmailrc", f"""\
[retriever]
type = SimplePOP3Retriever
server = {HOST}
port = {port}
username = {account.user}
password = {account.password}

[destination]
type = Maildir
path = {deliver_to}/
{as_user}
[options]
delete = false
read_all = true
verbose = 0
message_log_syslog = false
""")
    return ["getmail", "--getmaildir", str(getmaildir), "--rcfile", "getmailrc", "--quiet"]


def mailfilter(scratch: Path, port: int, account: Account) -> list[str]:
    """mailfilter reading every header block (TOP) in test mode: no rule, nothing deleted."""
    scratch.mkdir(parents=True, exist_ok=True)
    rc = _private(scratch / "mailfilterrc", f"""\
VERBOSE = 0
LOGFILE = "{scratch / "mailfilter.log"}"
SERVER = "{HOST}"
USER = "{account.user}"
PASS = "{account.password}"
PROTOCOL = "pop3"
PORT = {port}
TEST = "yes"
""")
    return ["mailfilter", "-M", str(rc)]


POPLIB_TOP_LOOP = """\
import poplib, sys
client = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=120)
client.user(sys.argv[3])
client.pass_(sys.argv[4])
count = client.stat()[0]
for n in range(1, count + 1):
    client.top(n, 0)
client.quit()
"""


def poplib_top_loop(port: int, account: Account) -> list[str]:
    """The ancestor's way: a plain poplib loop of ``TOP n 0``, one round trip per message."""
    return [PYTHON, "-c", POPLIB_TOP_LOOP, HOST, str(port), account.user,
            account.password]


# The least any Python program built on click can take for the purge: the interpreter, click
# imported, and popctl's own dialogue (greeting; CAPA; USER, PASS, CAPA, UIDL, LIST; TOP and
# DELE of the big ones; QUIT) over a raw socket, with no parsing, checks or output. What popctl
# needs beyond this is its own work; what this needs beyond mpop, no Python program can save.
FLOOR_PURGE = """\
import socket, sys
import click  # noqa: F401

host, port, user, password, limit = sys.argv[1:6]
sock = socket.create_connection((host, int(port)), timeout=120)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buffer = b""


def line():
    global buffer
    while b"\\n" not in buffer:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = sock.recv(65536)
        if not data:
            sys.exit("connection closed")
        buffer += data
    text, _, buffer = buffer.partition(b"\\n")
    return text


def status():
    text = line()
    if not text.startswith(b"+OK"):
        sys.exit(f"server said {text!r}")


def data():
    status()
    lines = []
    while (text := line()) != b".\\r":
        lines.append(text)
    return lines


status()
sock.sendall(b"CAPA\\r\\n")
data()
sock.sendall(f"USER {user}\\r\\nPASS {password}\\r\\nCAPA\\r\\nUIDL\\r\\nLIST\\r\\n".encode())
status(), status(), data(), data()
big = [text.split()[0].decode() for text in data() if int(text.split()[1]) > int(limit)]
sock.sendall("".join(f"TOP {n} 0\\r\\nDELE {n}\\r\\n" for n in big).encode())
for _ in big:
    data(), status()
sock.sendall(b"QUIT\\r\\n")
status()
"""


def floor_purge(port: int, account: Account, limit: int) -> list[str]:
    """FLOOR_PURGE: delete what is larger than ``limit`` octets, as popctl's dialogue does."""
    return [PYTHON, "-c", FLOOR_PURGE, HOST, str(port), account.user, account.password,
            str(limit)]

"""A private, real Dovecot POP3 server for integration tests.

``start_dovecot(root)`` writes its own ``dovecot.conf`` under ``root`` and runs
``dovecot -F -c root/dovecot.conf`` as a child process (its own process group),
with its own ``base_dir``, ``state_dir``, log file, passwd-file, Maildirs and a
``trustme`` CA.  Nothing of the system's ``/etc/dovecot`` is read and nothing
listens anywhere but 127.0.0.1.

Listeners (all on 127.0.0.1, free ports picked at start-up):

* ``port``: plain POP3 offering STLS.
* ``tls_port``: implicit TLS (pop3s).
* ``untrusted_port``: plain POP3 seen by Dovecot as coming from a *remote*
  client (see below), so ``disable_plaintext_auth = yes`` is enforced there.

The server certificate is issued for the DNS name ``localhost`` only (no IP
address), so verifying it against ``server_hostname="127.0.0.1"`` fails: tests
use that as the wrong-host-name case.  TLS 1.2 and newer are accepted.

Loopback and plaintext authentication (Dovecot 2.3, measured on 2.3.19.1)
-------------------------------------------------------------------------
Dovecot marks a login connection "secured" when it is TLS, when the client is
in ``login_trusted_networks``, **or when the client IP equals the server IP**
(``client->secured = ssl || trusted || remote_ip == local_ip`` in
``login-common``).  A client on 127.0.0.1 talking to 127.0.0.1 is therefore
always "secured": even with ``disable_plaintext_auth = yes`` it may USER/PASS
or AUTH PLAIN without STLS, and CAPA offers USER and ``SASL PLAIN LOGIN`` on
the plain port.  No 2.3 setting turns that off.

To test the real "plaintext authentication disallowed" behaviour the server
also has an ``inet_listener`` with ``haproxy = yes`` (trusted for 127.0.0.1
only) and a tiny relay thread in the test process listening on
``untrusted_port``: it forwards each connection to that listener after a
PROXY v1 header claiming the client is 127.0.0.2.  (No byte is ever sent to
127.0.0.2; it is only a label in the header.)  Dovecot then sees
remote 127.0.0.2 != local 127.0.0.1, not secured: CAPA drops USER and the
plaintext SASL mechanisms, USER/PASS get ``-ERR [AUTH] Plaintext
authentication disallowed on non-secure (SSL/TLS) connections.`` and STLS
works as usual.

Users (``{PLAIN}`` passwords in a passwd-file, so APOP, CRAM-MD5 and
SCRAM-SHA-256 work): ``alice``/``alice-pw-Ω1`` (UTF-8, accepted by Dovecot),
``bob``/``bob-secret``, ``carol``/``c4r0l pass``.

Failed logins are answered within about 0.5 s: ``auth_failure_delay = 0``
(the auth process still flushes failures on a 0.5 s tick) and the anvil auth
penalty (2, 4, 8 .. 15 s extra per client IP after failures) is off, its
``anvil-auth-penalty`` socket being disabled (``mode = 0``).

Mail ownership: Dovecot refuses uid 0 for mail access ("userdb returned 0 as
uid"), whatever ``first_valid_uid`` says.  When running as root the mail
processes run as ``nobody`` and are chrooted (``home=ROOT/mail/./USER``,
``valid_chroot_dirs``), because pytest's temporary directories are mode 0700
and ``nobody`` could not otherwise reach them; ``deliver``/``reset`` chown
what they create.  When not running as root, everything (login, auth and mail
processes) runs as the invoking user, with chrooting turned off.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trustme

HOST = "127.0.0.1"
CERT_HOSTNAME = "localhost"

DEFAULT_USERS: dict[str, str] = {
    "alice": "alice-pw-Ω1",
    "bob": "bob-secret",
    "carol": "c4r0l pass",
}

# All of these are accepted by Dovecot 2.3.19.  "apop" is not a SASL
# mechanism: it only makes Dovecot put the <timestamp> into the greeting.
AUTH_MECHANISMS = ("plain", "login", "cram-md5", "scram-sha-256", "apop")

# The address the relay on ``untrusted_port`` claims for its clients.
UNTRUSTED_CLIENT_IP = "127.0.0.2"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@=,-]+$")
_SAFE_USER = re.compile(r"^[a-z][a-z0-9_-]*$")
_MAX_ROOT_LEN = 72


class DovecotError(RuntimeError):
    """Dovecot could not be started or stopped."""


class DovecotNotFound(DovecotError):
    """No dovecot binary on this machine."""


def find_dovecot() -> str | None:
    """Return the path of the ``dovecot`` master binary, or None."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class DovecotServer:
    host: str
    port: int
    tls_port: int
    ca_file: str
    users: dict[str, str]
    root: Path
    untrusted_port: int
    log_file: Path
    _binary: str = field(repr=False)
    _conf: Path = field(repr=False)
    _process: subprocess.Popen[bytes] = field(repr=False)
    _relay: _ProxyRelay = field(repr=False)
    _mail_owner: tuple[int, int] | None = field(repr=False)
    _last_stamp_us: int = field(default=0, repr=False)
    _seq: int = field(default=0, repr=False)
    _stopped: bool = field(default=False, repr=False)
    # True once stop() had to SIGKILL something: Dovecot did not shut down cleanly.
    killed_on_stop: bool = field(default=False, repr=False)

    # -- mailboxes ---------------------------------------------------------

    def maildir(self, user: str) -> Path:
        """The Maildir of ``user`` (``ROOT/mail/USER/Maildir``)."""
        self._check_user(user)
        return self.root / "mail" / user / "Maildir"

    def deliver(self, user: str, message: bytes) -> None:
        """Store ``message`` (bytes as given, LF or CRLF) in ``user``'s Maildir/new.

        The file is written to tmp/ and renamed into new/, so the next POP3
        session sees it.  Messages are numbered in delivery order: the file
        names carry strictly increasing (seconds, microseconds) stamps, which
        is what Dovecot sorts new mail by.
        """
        maildir = self.maildir(user)
        self._ensure_maildir(maildir)
        stamp = max(time.time_ns() // 1000, self._last_stamp_us + 1)
        self._last_stamp_us = stamp
        self._seq += 1
        secs, usecs = divmod(stamp, 1_000_000)
        name = f"{secs}.M{usecs}P{os.getpid()}Q{self._seq}.popctl-test"
        tmp = maildir / "tmp" / name
        with open(tmp, "wb") as fh:
            fh.write(message)
        self._chown(tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, maildir / "new" / name)

    def reset(self, user: str) -> None:
        """Empty ``user``'s mailbox completely (messages, index, uidlist).

        Only the ``dovecot-uidvalidity*`` files survive, so every reset
        yields a new UIDVALIDITY and UIDLs never repeat within one server's
        life.  Call it while no POP3 session is open; it first waits (up to
        5 s) for POP3 processes that are still finishing a QUIT.
        """
        maildir = self.maildir(user)
        self._wait_for_mail_processes(5.0)
        if maildir.is_dir():
            for entry in maildir.iterdir():
                if entry.name.startswith("dovecot-uidvalidity"):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self._ensure_maildir(maildir)

    # -- lifecycle ---------------------------------------------------------

    def stop(self) -> None:
        """Stop Dovecot (``dovecot -c CONF stop``) and wait for all its processes."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self._relay.stop()
        self.killed_on_stop = _stop_master(self._binary, self._conf, self._process)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of Dovecot's log (for failure messages)."""
        return _tail(self.log_file, lines)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this server's CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    # -- internals ---------------------------------------------------------

    def _check_user(self, user: str) -> None:
        if user not in self.users:
            raise KeyError(f"unknown Dovecot test user {user!r}")

    def _chown(self, path: Path) -> None:
        if self._mail_owner is not None:
            os.chown(path, *self._mail_owner)

    def _ensure_maildir(self, maildir: Path) -> None:
        for path in (maildir.parent, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            if not path.is_dir():
                path.mkdir(mode=0o700)
                self._chown(path)

    def _wait_for_mail_processes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _mail_processes(self._process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)


def start_dovecot(
    root: Path,
    users: Mapping[str, str] | None = None,
    *,
    timeout: float = START_TIMEOUT,
) -> DovecotServer:
    """Start a private Dovecot under ``root`` and wait until it accepts connections."""
    binary = find_dovecot()
    if binary is None:
        raise DovecotNotFound("dovecot binary not found (install dovecot-core dovecot-pop3d)")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not _SAFE_PATH.match(str(root)):
        raise DovecotError(f"unsupported characters in Dovecot root path {str(root)!r}")
    if len(str(root)) > _MAX_ROOT_LEN:
        # base_dir holds unix sockets, whose paths are limited to 107 bytes
        raise DovecotError(f"Dovecot root path too long (> {_MAX_ROOT_LEN}): {root}")
    users = dict(DEFAULT_USERS if users is None else users)
    for login, password in users.items():
        if not _SAFE_USER.match(login):
            raise ValueError(f"unsupported test login {login!r}")
        if any(c in password for c in ":\n\r\t"):
            raise ValueError(f"unsupported character in password of {login!r}")

    is_root = os.geteuid() == 0
    if is_root:
        nobody = pwd.getpwnam("nobody")
        mail_owner: tuple[int, int] | None = (nobody.pw_uid, nobody.pw_gid)
    else:
        mail_owner = None

    for sub in ("run", "state", "mail"):
        (root / sub).mkdir(mode=0o755, exist_ok=True)
    ca_file, cert_file, key_file = _make_certs(root)
    users_file = root / "users"
    users_file.write_bytes(
        "".join(f"{login}:{{PLAIN}}{pw}::::::\n" for login, pw in users.items()).encode()
    )
    os.chmod(users_file, 0o600)
    log_file = root / "dovecot.log"

    last_error = ""
    for _attempt in range(5):
        ports = _free_ports(3)
        conf = root / "dovecot.conf"
        conf.write_text(
            _config(
                root=root,
                ports=ports,
                cert_file=cert_file,
                key_file=key_file,
                users_file=users_file,
                log_file=log_file,
                mail_owner=mail_owner,
            ),
            encoding="utf-8",
        )
        for old in (log_file, root / "master.out"):
            old.unlink(missing_ok=True)  # so errors are read from this attempt only
        process = _spawn(binary, conf, root / "master.out")
        try:
            ready = _wait_ready(process, ports[:2], log_file, timeout)
        except BaseException:
            _stop_master(binary, conf, process)
            raise
        if ready:
            break
        _stop_master(binary, conf, process)
        last_error = _tail(root / "master.out", 20) + _tail(log_file, 20)
        if "in use" not in last_error:
            raise DovecotError(f"Dovecot exited during start-up:\n{last_error}")
    else:
        raise DovecotError(f"Dovecot could not bind free ports:\n{last_error}")

    try:
        relay = _ProxyRelay(ports[2], UNTRUSTED_CLIENT_IP)
    except BaseException:
        _stop_master(binary, conf, process)
        raise
    server = DovecotServer(
        host=HOST,
        port=ports[0],
        tls_port=ports[1],
        ca_file=str(ca_file),
        users=users,
        root=root,
        untrusted_port=relay.port,
        log_file=log_file,
        _binary=binary,
        _conf=conf,
        _process=process,
        _relay=relay,
        _mail_owner=mail_owner,
    )
    atexit.register(server.stop)
    for login in users:
        server._ensure_maildir(server.maildir(login))
    return server


# -- configuration --------------------------------------------------------


def _config(
    *,
    root: Path,
    ports: list[int],
    cert_file: Path,
    key_file: Path,
    users_file: Path,
    log_file: Path,
    mail_owner: tuple[int, int] | None,
) -> str:
    pop3, pop3s, haproxy = ports
    # Not root: chroot() is impossible, so the login and anvil processes don't.
    no_chroot = "" if mail_owner is not None else "  chroot =\n"
    mail = root / "mail"
    if mail_owner is not None:
        uid, gid = mail_owner
        # Chroot into ROOT/mail (as root, before dropping to nobody): pytest's
        # 0700 temp dirs above it need not be searchable by nobody.
        userdb_args = f"uid={uid} gid={gid} home={mail}/./%u"
        privileges = f"""\
valid_chroot_dirs = {mail}
mail_location = maildir:~/Maildir
service auth {{
  user = root
}}
"""
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        my_group = grp.getgrgid(os.getgid()).gr_name
        userdb_args = f"uid={os.getuid()} gid={os.getgid()} home={mail}/%u"
        privileges = f"""\
mail_location = maildir:{mail}/%u/Maildir
default_login_user = {me}
default_internal_user = {me}
default_internal_group = {my_group}
"""
    return f"""\
# Generated by tests/support/dovecot_server.py: a private test instance.
base_dir = {root}/run
state_dir = {root}/state
instance_name = popctl-test-{pop3}
log_path = {log_file}
info_log_path = {log_file}
debug_log_path = {log_file}
auth_verbose = yes
protocols = pop3
listen = {HOST}
shutdown_clients = yes
first_valid_uid = 1
first_valid_gid = 1
verbose_proctitle = yes

ssl = yes
ssl_cert = <{cert_file}
ssl_key = <{key_file}
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = yes
auth_mechanisms = {" ".join(AUTH_MECHANISMS)}
haproxy_trusted_networks = {HOST}
# Fast failed logins: no fixed 2 s failure delay (replies still wait for
# the auth process's 0.5 s flush tick), and no anvil auth penalty (growing
# 2..15 s delays per client IP after failures), by disabling its socket.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{no_chroot}}}

pop3_uidl_format = %08Xu%08Xv

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_file}
}}
userdb {{
  driver = static
  args = {userdb_args}
}}
{privileges}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {pop3s}
    ssl = yes
  }}
  inet_listener pop3_haproxy {{
    address = {HOST}
    port = {haproxy}
    haproxy = yes
  }}
{no_chroot}}}
service pop3 {{
  service_count = 1
}}
"""


def _make_certs(root: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert(CERT_HOSTNAME)
    ca_file = root / "ca.pem"
    cert_file = root / "server-cert.pem"
    key_file = root / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    os.chmod(key_file, 0o600)
    return ca_file, cert_file, key_file


# -- processes ------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Distinct ports that were free on 127.0.0.1 a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _spawn(binary: str, conf: Path, out: Path) -> subprocess.Popen[bytes]:
    with open(out, "ab") as fh:
        return subprocess.Popen(
            [binary, "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg() reaches every child
            close_fds=True,
        )


def _wait_ready(
    process: subprocess.Popen[bytes], ports: list[int], log_file: Path, timeout: float
) -> bool:
    """True once every port accepts (the plain one must greet); False if Dovecot exited."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise DovecotError(
                f"Dovecot ports {pending} not ready within {timeout:.0f} s:\n" + _tail(log_file, 40)
            )
        port = pending[0]
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as s:
                if port == ports[0]:
                    # the greeting comes only once the auth process is up
                    if not s.recv(512).startswith(b"+OK"):
                        raise OSError("no greeting")
                    s.sendall(b"QUIT\r\n")
        except OSError:
            time.sleep(0.02)
            continue
        pending.pop(0)
    return True


def _stop_master(binary: str, conf: Path, process: subprocess.Popen[bytes]) -> bool:
    """Stop a master started by _spawn(); True if anything had to be SIGKILLed."""
    killed = False
    pgid = process.pid  # start_new_session: the master leads its own process group
    if process.poll() is None:
        # "dovecot stop" reads base_dir/master.pid and sends SIGTERM, then polls
        # until that pid is gone: reap the master meanwhile, or it would see a
        # zombie and wait its full 3 s.
        stopper = subprocess.Popen(
            [binary, "-c", str(conf), "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait()
        try:
            stopper.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            stopper.kill()
            stopper.wait()
    else:
        process.wait()
    # The children notice the master's exit and quit by themselves; kill any
    # that are still running after a moment.
    deadline = time.monotonic() + 3.0
    while _live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _live_group_members(pgid):
        killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return killed


def _proc_stat(pid: str) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, pgrp) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, fields[0], int(fields[1]), int(fields[2])


def _live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies."""
    if not os.path.isdir("/proc"):
        return []
    members = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        stat = _proc_stat(pid)
        if stat is not None and stat[3] == pgid and stat[1] != "Z":
            members.append(int(pid))
    return members


def _mail_processes(master_pid: int) -> list[int]:
    """POP3 session processes of this Dovecot that are still alive."""
    if not os.path.isdir("/proc"):
        return []
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == master_pid and stat[0] == "pop3" and stat[1] != "Z":
            found.append(int(pid))
    return found


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])


# -- PROXY-protocol relay for untrusted_port ------------------------------


class _ProxyRelay:
    """Listen on 127.0.0.1:<port> and forward every connection to Dovecot's
    ``haproxy = yes`` listener, prefixed by a PROXY v1 header naming
    ``client_ip`` as the source: Dovecot then treats the client as remote."""

    def __init__(self, target_port: int, client_ip: str) -> None:
        self._target_port = target_port
        self._client_ip = client_ip
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="dovecot-proxy-accept", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            conns = list(self._conns)
        self._wake_w.send(b"x")
        self._acceptor.join(5.0)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(5.0)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                events = sel.select()
                if any(key.fileobj is self._wake_r for key, _ in events):
                    return
                try:
                    client, addr = self._listener.accept()
                except OSError:
                    continue
                thread = threading.Thread(
                    target=self._serve, args=(client, addr[1]), name="dovecot-proxy", daemon=True
                )
                with self._lock:
                    if self._stopping:
                        client.close()
                        return
                    self._conns.add(client)
                    self._threads.append(thread)
                thread.start()

    def _serve(self, client: socket.socket, client_port: int) -> None:
        upstream: socket.socket | None = None
        try:
            try:
                upstream = socket.create_connection((HOST, self._target_port), timeout=5.0)
                upstream.settimeout(None)
            except OSError:
                return
            with self._lock:
                if self._stopping:
                    return
                self._conns.add(upstream)
            header = f"PROXY TCP4 {self._client_ip} {HOST} {client_port} {self.port}\r\n"
            try:
                upstream.sendall(header.encode("ascii"))
            except OSError:
                return
            other = threading.Thread(
                target=_pump, args=(upstream, client), name="dovecot-proxy-down", daemon=True
            )
            other.start()
            _pump(client, upstream)
            other.join()
        finally:
            with self._lock:
                self._conns.discard(client)
                if upstream is not None:
                    self._conns.discard(upstream)
            client.close()
            if upstream is not None:
                upstream.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass  # a reset or a socket shut down by stop() just ends this direction
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

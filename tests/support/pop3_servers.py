"""Private, real POP3 servers besides Dovecot, for the interoperability tests.

Each ``start_*`` function runs one server from a Debian package under a temporary ``root``,
listening on 127.0.0.1 only (free ports picked at start-up), with its own configuration,
users, mailboxes and log; nothing of the system's configuration is read or changed.

* GNU mailutils ``pop3d`` (package ``mailutils-pop3d``): its own ``--config-file`` in daemon
  mode, ``virtdomain`` users (login ``alice@example.org``; a passwd-format file per domain with
  crypt(3) hashes), Maildir mailboxes (``HOME/INBOX``), mandatory locking off, a ``trustme``
  certificate for STLS on ``port`` and implicit TLS on ``tls_port``.
* ``mpopd`` (package ``mpop``): ``--interface=127.0.0.1 --port=N``, one ``--auth=USER,
  passwordeval`` and ``--maildir`` pair per user. No TLS.
* ``popa3d`` (not installable beside Dovecot: ``Conflicts: pop3-server``): the binary from the
  unpacked .deb (``.ci/run`` puts it in ``.ci/cache/popa3d``; or ``POPCTL_POPA3D``), run
  inetd-style by ``socat TCP-LISTEN:PORT,bind=127.0.0.1,fork EXEC:popa3d``. Its paths are
  compiled in (PAM service ``popa3d``, system users, ``/var/mail/USER``, privilege drop to the
  ``popa3d`` user with a chroot to ``/var/lib/popa3d``), so socat and every popa3d run in a
  private **mount namespace** (``unshare --mount``) where ``/etc/passwd``, ``/etc/shadow``,
  ``/etc/group``, ``/etc/pam.d`` and ``/var`` are bind mounts of files under ``root``. The
  real ones are never touched; the namespace disappears with its last process. This needs
  root (or CAP_SYS_ADMIN), ``unshare`` (util-linux) and ``socat``.

Messages are handed to ``deliver`` in wire form (CRLF line ends) and stored in each server's
native form: LF line ends, as the Maildir and mbox conventions want (mailutils 3.15 mangles a
Maildir file with CRLF line ends: it keeps only the X-UIDL header it adds). The servers send
them back with CRLF.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trustme

HOST = "127.0.0.1"
DOMAIN = "example.org"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@=-]+$")
_REPO = Path(__file__).resolve().parents[2]

MAILUTILS_USERS = {"alice": "alice-mu-secret", "bob": "bob-mu-secret"}
MPOPD_USERS = {"alice": "alice-mpopd-secret", "bob": "bob-mpopd-secret"}
POPA3D_USERS = {"pat": "pat-popa3d-secret"}


class ServerError(RuntimeError):
    """A server could not be started."""


class ServerNotFound(ServerError):
    """The server (or a tool needed to contain it) is not installed here."""


@dataclass
class Pop3Server:
    """A running private server and one test mailbox on it."""

    name: str
    host: str  # what clients connect to (and the certificate names, if there is TLS)
    port: int  # plain POP3 (STLS offered if the server has TLS)
    tls_port: int | None  # implicit TLS, if the server has it
    ca_file: str | None
    login: str  # the test mailbox's login name
    password: str = field(repr=False)
    root: Path
    log_file: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _seq: int = field(default=0, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def has_tls(self) -> bool:
        return self.ca_file is not None

    def deliver(self, message: bytes) -> None:
        """Store ``message`` (CRLF wire form) as the last message of the test mailbox."""
        raise NotImplementedError

    def reset(self) -> None:
        """Empty the test mailbox. Waits for sessions still finishing (a QUIT's update)."""
        raise NotImplementedError

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._process is not None:
            _stop_group(self._process)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no session process of this server is left (each runs in its own child)."""
        if self._process is None:
            return
        deadline = time.monotonic() + timeout
        while _group_members(self._process.pid, exclude=self._process.pid):
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name}: sessions still running after {timeout} s")
            time.sleep(0.01)


# -- Maildir servers --------------------------------------------------------------------------


@dataclass
class _MaildirServer(Pop3Server):
    maildir: Path = field(default=Path(), repr=False)

    def deliver(self, message: bytes) -> None:
        # Names and modification times both increase: mailutils orders new mail by file name,
        # mpopd by modification time.
        self._seq += 1
        stamp = 1_700_000_000 + self._seq
        name = f"{stamp}.M{self._seq:06d}P{os.getpid()}.popctl-test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(message.replace(b"\r\n", b"\n"))
        os.utime(tmp, (stamp, stamp))
        os.rename(tmp, self.maildir / "new" / name)

    def reset(self) -> None:
        self.wait_idle()
        if self.maildir.exists():
            shutil.rmtree(self.maildir)
        for sub in ("", "cur", "new", "tmp"):
            (self.maildir / sub).mkdir(mode=0o700)


def find_mailutils_pop3d() -> str | None:
    found = shutil.which("pop3d") or next(
        (p for p in ("/usr/sbin/pop3d",) if os.access(p, os.X_OK)), None)
    if found is None:
        return None
    try:
        out = subprocess.run([found, "--version"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if b"GNU Mailutils" in out else None


def _crypt(password: str) -> str:
    """A SHA-512 crypt(3) hash, as the virtdomain passwd files want."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # Python 3.11/3.12 standard library
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError:
        return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
                              capture_output=True, check=True).stdout.decode().strip()


def _certs(root: Path, *names: str) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert(*names)
    ca_file, cert_file, key_file = root / "ca.pem", root / "cert.pem", root / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    os.chmod(key_file, 0o600)
    return ca_file, cert_file, key_file


def start_mailutils(root: Path, user: str = "alice") -> _MaildirServer:
    binary = find_mailutils_pop3d()
    if binary is None:
        raise ServerNotFound("GNU mailutils pop3d is not installed (apt-get install "
                             "mailutils-pop3d)")
    root = _prepare_root(root)
    ca_file, cert_file, key_file = _certs(root, HOST, "localhost")
    (root / "passwd").mkdir(mode=0o755)
    uid, gid = os.getuid(), os.getgid()
    (root / "passwd" / DOMAIN).write_text("".join(
        f"{login}:{_crypt(pw)}:{uid}:{gid}:popctl test:{root}/mail/{login}:/dev/null\n"
        for login, pw in MAILUTILS_USERS.items()))
    for login in MAILUTILS_USERS:
        for sub in ("", "cur", "new", "tmp"):
            (root / "mail" / login / "INBOX" / sub).mkdir(mode=0o700, parents=True)
    log_file = root / "pop3d.log"

    def spawn(ports: list[int]) -> subprocess.Popen[bytes]:
        conf = root / "pop3d.conf"
        conf.write_text(f"""\
# Generated by tests/support/pop3_servers.py: a private GNU mailutils pop3d.
mode daemon;
foreground yes;
pidfile {root}/pop3d.pid;
max-children 20;
auth {{
  authentication clear;
  authentication generic;
  authorization clear;
  authorization virtdomain;
}};
virtdomain {{ passwd-dir {root}/passwd; }};
mailbox {{ mailbox-type maildir; }};
mandatory-locking {{ enable no; }};
tcp-wrappers {{ enable no; }};
logging {{ syslog no; }};
tls {{ ssl-certificate-file {cert_file}; ssl-key-file {key_file}; }};
tls-file-checks {{ key-file none; cert-file none; ca-file none; }};
server {HOST}:{ports[0]} {{ tls-mode stls; }};
server {HOST}:{ports[1]} {{ tls-mode connection; }};
""")
        return _spawn([binary, f"--config-file={conf}"], log_file)

    process, ports = _start(spawn, 2, log_file, greet_port_index=0)
    server = _MaildirServer(
        name="mailutils", host=HOST, port=ports[0], tls_port=ports[1], ca_file=str(ca_file),
        login=f"{user}@{DOMAIN}", password=MAILUTILS_USERS[user], root=root,
        log_file=log_file, _process=process, maildir=root / "mail" / user / "INBOX")
    atexit.register(server.stop)
    return server


def start_mpopd(root: Path, user: str = "alice") -> _MaildirServer:
    binary = shutil.which("mpopd")
    if binary is None:
        raise ServerNotFound("mpopd is not installed (apt-get install mpop)")
    root = _prepare_root(root)
    args = [binary, f"--interface={HOST}", f"--log={root}/mpopd.log"]
    for login, password in MPOPD_USERS.items():
        secret = root / f"{login}.password"
        secret.write_text(password)
        os.chmod(secret, 0o600)
        maildir = root / "mail" / login / "Maildir"
        for sub in ("", "cur", "new", "tmp"):
            (maildir / sub).mkdir(mode=0o700, parents=True)
        args += [f"--auth={login},cat {secret}", f"--maildir={maildir}"]
    log_file = root / "mpopd.log"

    def spawn(ports: list[int]) -> subprocess.Popen[bytes]:
        return _spawn([*args, f"--port={ports[0]}"], root / "mpopd.out")

    process, ports = _start(spawn, 1, log_file, greet_port_index=0)
    server = _MaildirServer(
        name="mpopd", host=HOST, port=ports[0], tls_port=None, ca_file=None, login=user,
        password=MPOPD_USERS[user], root=root, log_file=log_file, _process=process,
        maildir=root / "mail" / user / "Maildir")
    atexit.register(server.stop)
    return server


# -- popa3d in a private mount namespace ------------------------------------------------------


@dataclass
class _Popa3dServer(Pop3Server):
    mbox: Path = field(default=Path(), repr=False)
    owner: tuple[int, int] = (0, 0)

    def deliver(self, message: bytes) -> None:
        self._seq += 1
        body = message.replace(b"\r\n", b"\n")
        if not body.endswith(b"\n"):
            body += b"\n"
        # mboxrd quoting; popa3d does not unquote, so tests avoid "From " at a line start.
        body = re.sub(rb"(?m)^(>*From )", rb">\1", body)
        when = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(1_700_000_000 + self._seq))
        with open(self.mbox, "ab") as fh:
            fh.write(b"From popctl-test@example.org " + when.encode() + b"\n" + body + b"\n")
        self._backdate()

    def _backdate(self) -> None:
        # popa3d waits a second before reading a mailbox modified in the current second (a
        # writer may still be at work); we are the only writer, and done.
        past = time.time() - 5
        os.utime(self.mbox, (past, past))

    def reset(self) -> None:
        self.wait_idle()
        self.mbox.write_bytes(b"")
        os.chown(self.mbox, *self.owner)
        os.chmod(self.mbox, 0o600)
        self._backdate()


def find_popa3d() -> str | None:
    candidates = [os.environ.get("POPCTL_POPA3D", ""),
                  str(_REPO / ".ci" / "cache" / "popa3d" / "usr" / "sbin" / "popa3d"),
                  shutil.which("popa3d") or ""]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def popa3d_missing() -> str | None:
    """Why popa3d cannot be run (contained) here, or None if it can."""
    if find_popa3d() is None:
        return ("popa3d is not unpacked (it conflicts with dovecot-pop3d; .ci/run unpacks its "
                ".deb into .ci/cache/popa3d, or set POPCTL_POPA3D)")
    for tool in ("socat", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (needed to run popa3d contained)"
    if os.geteuid() != 0:
        return "popa3d needs root here (a private mount namespace for its compiled-in paths)"
    return None


def _free_ids(count: int) -> list[int]:
    used = {p.pw_uid for p in pwd.getpwall()} | {p.pw_gid for p in pwd.getpwall()}
    found = [i for i in range(61000, 65000) if i not in used][:count]
    if len(found) < count:
        raise ServerError("no free uid for popa3d's private users")
    return found


def start_popa3d(root: Path, user: str = "pat") -> _Popa3dServer:
    reason = popa3d_missing()
    if reason is not None:
        raise ServerNotFound(reason)
    binary = find_popa3d()
    assert binary is not None
    root = _prepare_root(root)
    os.chmod(root, 0o755)
    if not _SAFE_PATH.match(binary):
        raise ServerError(f"unsupported characters in the popa3d path {binary!r}")
    daemon_id, user_id = _free_ids(2)
    etc, var = root / "etc", root / "var"
    (etc / "pam.d").mkdir(parents=True)
    (var / "lib" / "popa3d").mkdir(parents=True, mode=0o755)
    (var / "mail").mkdir(mode=0o1777)
    os.chmod(var / "mail", 0o1777)  # mkdir's mode is masked by the umask
    names = {"popa3d", *POPA3D_USERS}

    def keep(path: str) -> str:
        lines = Path(path).read_text().splitlines(keepends=True)
        return "".join(line for line in lines if line.split(":", 1)[0] not in names)

    (etc / "passwd").write_text(
        keep("/etc/passwd")
        + f"popa3d:x:{daemon_id}:{daemon_id}:popa3d:/nonexistent:/usr/sbin/nologin\n"
        + f"pat:x:{user_id}:{user_id}:popctl test:/nonexistent:/usr/sbin/nologin\n")
    (etc / "group").write_text(keep("/etc/group") + f"popa3d:x:{daemon_id}:\n"
                               f"pat:x:{user_id}:\n")
    (etc / "shadow").write_text(keep("/etc/shadow") + "popa3d:!:19000::::::\n"
                                f"pat:{_crypt(POPA3D_USERS['pat'])}:19000:0:99999:7:::\n")
    os.chmod(etc / "shadow", 0o600)
    (etc / "pam.d" / "popa3d").write_text("auth required pam_unix.so nodelay\n"
                                         "account required pam_unix.so\n")
    mbox = var / "mail" / user
    log_file = root / "socat.log"

    def spawn(ports: list[int]) -> subprocess.Popen[bytes]:
        script = "set -e\n" + "".join(
            f"mount --bind {etc}/{name} /etc/{name}\n"
            for name in ("passwd", "shadow", "group", "pam.d")) + (
            f"mount --bind {var} /var\n"
            f"exec socat TCP-LISTEN:{ports[0]},bind={HOST},reuseaddr,fork "
            f"EXEC:{binary},nofork\n")
        return _spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                      log_file)

    server = _Popa3dServer(
        name="popa3d", host=HOST, port=0, tls_port=None, ca_file=None, login=user,
        password=POPA3D_USERS[user], root=root, log_file=log_file, mbox=mbox,
        owner=(user_id, user_id))
    server.reset()
    process, ports = _start(spawn, 1, log_file, greet_port_index=0)
    server.port, server._process = ports[0], process
    atexit.register(server.stop)
    return server


# -- processes --------------------------------------------------------------------------------


def _prepare_root(root: Path) -> Path:
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not _SAFE_PATH.match(str(root)):
        raise ServerError(f"unsupported characters in the server root {str(root)!r}")
    return root


def _free_ports(count: int) -> list[int]:
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


def _spawn(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    with open(out, "ab") as fh:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)


def _start(spawn: Callable[[list[int]], subprocess.Popen[bytes]], count: int, log_file: Path,
           greet_port_index: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Spawn on free ports until the server greets (a port taken meanwhile: try again)."""
    last = ""
    for _attempt in range(5):
        ports = _free_ports(count)
        process: subprocess.Popen[bytes] = spawn(ports)
        try:
            if _wait_ready(process, ports, greet_port_index):
                return process, ports
        except BaseException:
            _stop_group(process)
            raise
        _stop_group(process)
        last = _tail(log_file)
    raise ServerError(f"server did not start:\n{last}")


def _wait_ready(process: subprocess.Popen[bytes], ports: list[int], greet: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise ServerError(f"ports {pending} not ready within {START_TIMEOUT:.0f} s")
        port = pending[0]
        try:
            with socket.create_connection((HOST, port), timeout=2.0) as s:
                if port == ports[greet]:
                    if not s.recv(512).startswith(b"+OK"):
                        raise OSError("no greeting")
                    s.sendall(b"QUIT\r\n")
                    s.recv(512)
        except OSError:
            time.sleep(0.02)
            continue
        pending.pop(0)
    return True


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    while _group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _group_members(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _group_members(pgid: int, exclude: int | None = None) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    with contextlib.suppress(OSError):
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == exclude:
                continue
            try:
                raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(pid))
    return members


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""

"""popctl side by side with the POP3 clients of Debian, on a private Dovecot, at 0, 20 and 50 ms.

    python benchmarks/run.py            # the full suite (about 10 minutes); updates
                                        # docs/PERFORMANCE.md
    python benchmarks/run.py --quick    # small N, one repetition: a smoke test (seconds)

Starts a private Dovecot on 127.0.0.1 (tests/support/dovecot_server.py) with generated mailboxes
(benchmarks/mailboxes.py), puts the user-space delay proxy (benchmarks/delay_proxy.py) in front
of it for each round-trip time, and runs every client as a separate process doing the closest
equivalent job, interleaved repetition by repetition so they share the machine's load. Times are
wall-clock medians; peak memory is the client's maximum RSS (GNU time's %M). Peers that are not
installed are left out (``apt-get install -y mpop fetchmail mailfilter getmail6``).

All clients use Dovecot's plain POP3 port on loopback with USER/PASS (Dovecot allows plaintext
from 127.0.0.1), so nobody pays for TLS: with TLS every client would add the same handshake
round trips. popctl runs as installed, with compiled bytecode (a private PYTHONPYCACHEPREFIX,
warmed up first).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import mailboxes, peers  # noqa: E402
from benchmarks.delay_proxy import DelayProxy  # noqa: E402
from benchmarks.wire import CountingProxy, Wire  # noqa: E402
from tests.support.dovecot_server import DovecotServer, start_dovecot  # noqa: E402

PERFORMANCE_MD = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- benchmarks/run.py: begin -->", "<!-- benchmarks/run.py: end -->"
MIB = 1024 * 1024
FLOOR = "python+click floor (same dialogue)"
DEFAULT_AUTH = "default --auth auto"
# Issue 13: commands naming one message, and what they are compared with.
LOGIN_ONLY = "capa (the login alone)"
NAMED_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (LOGIN_ONLY, ("capa",)),
    ("top 3", ("top", "3")),
    ("retr 3", ("retr", "3")),
    ("dele 3 --yes", ("dele", "3", "--yes")),
    ("list 3", ("list", "3", "--no-cache")),
    ("top 3-3 (a range: the listings, as top 3 before)", ("top", "3-3")),
)
TIMEOUT = 900.0  # one client run; the lock-step peers at 50 ms take about two minutes


@dataclass(frozen=True)
class Config:
    quick: bool
    messages: int  # the realistic mailbox
    big: tuple[float, ...]  # its big messages, MiB
    huge: int  # the one-message mailbox, octets
    scale: tuple[int, ...]  # message counts of the scale mailboxes
    rtts: tuple[int, ...]  # milliseconds
    reps: int  # popctl, mpop and the start-up runs
    slow_reps: int  # lock-step peers with a delay (each run costs a round trip per message)
    startup_reps: int
    bandwidth: float | None  # octets per second on the proxy, each direction


FULL = Config(False, 1000, (2.0, 2.0, 2.5), 200 * 1000 * 1000, (1000, 10_000, 100_000),
              (0, 20, 50), 7, 1, 21, None)
QUICK = Config(True, 12, (1.2,), 2 * MIB, (50, 100, 300), (0, 20), 1, 1, 2, None)


@dataclass
class Run:
    seconds: float
    max_rss_kib: int
    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass
class Result:
    job: str
    client: str
    times: dict[int, list[float]] = field(default_factory=dict)  # rtt ms -> seconds
    rss: list[int] = field(default_factory=list)  # KiB
    notes: list[str] = field(default_factory=list)

    def median(self, rtt: int) -> float | None:
        values = self.times.get(rtt)
        return statistics.median(values) if values else None

    def round_trips(self, rtt: int) -> float | None:
        base, slow = self.median(0), self.median(rtt)
        if not rtt or base is None or slow is None:
            return None
        return (slow - base) / (rtt / 1000)


# Peak RSS: a child's ru_maxrss would start at this process's size (Linux keeps the high-water
# mark across fork and exec), so the client is started by GNU time, a small process, and its %M
# (the client's own maximum RSS, KiB) is read back. Without /usr/bin/time: 0 (unknown).
GNU_TIME = "/usr/bin/time"


def execute(command: Sequence[str], env: dict[str, str], *, stdout: int | None = None,
            timeout: float = TIMEOUT) -> Run:
    """Run one client; its wall time and peak RSS in KiB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="rss-") as rss:
        wrapper = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name] \
            if os.access(GNU_TIME, os.X_OK) else []
        start = time.perf_counter()
        process = subprocess.Popen([*wrapper, *command], stdin=subprocess.DEVNULL,
                                   stdout=out if stdout is None else stdout, stderr=err,
                                   env=env)
        # A blocking wait, and a timer for the timeout: Popen.wait(timeout) polls with sleeps
        # of up to 50 ms, which rounded every figure over ~0.1 s up to the next 50 ms step.
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            returncode = process.wait()
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        peak = rss.read().decode().strip().splitlines()
        return Run(seconds, int(peak[-1]) if peak and peak[-1].isdigit() else 0, returncode,
                   out.read(), err.read())


def popctl_command(python: str) -> list[str]:
    """popctl's console script next to ``python`` (not a pyenv shim), else ``-m popctl``."""
    script = Path(python).parent / "popctl"
    if script.is_file():
        return [str(script)]
    return [python, "-m", "popctl"]


def install_in_venv(scratch: Path, env: dict[str, str], source: Path = ROOT,
                    name: str = "venv") -> str:
    """popctl as a user gets it: ``pip install .`` into a fresh virtual environment (wheel,
    compiled bytecode, no editable-install finder or other development .pth files in its
    site-packages); the python of that environment."""
    venv = scratch / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(source)], check=True, env=env, stdout=subprocess.DEVNULL)
    return python


def install_baseline(scratch: Path, env: dict[str, str], ref: str) -> list[str]:
    """popctl as it was at git ``ref`` (``git archive``, no work tree of ours touched), installed
    like the current one in a venv of its own: the command that runs it."""
    source = scratch / "baseline-src"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return popctl_command(install_in_venv(scratch, env, source, "baseline-venv"))


class Bench:
    def __init__(self, config: Config, scratch: Path, out: Callable[[str], None], *,
                 venv: bool, baseline: str | None = None) -> None:
        self.config = config
        self.scratch = scratch
        self.say = out
        self.results: list[Result] = []
        self.loads: list[float] = []
        # As a user runs them: bytecode cached, output buffered (some sandboxes export these).
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}
        self.python = sys.executable
        if venv:
            started = time.perf_counter()
            self.python = install_in_venv(scratch, self.env)
            out(f"popctl installed in {scratch / 'venv'} in {time.perf_counter() - started:.0f} s")
        self.installed = "pip install . in a fresh venv" if venv else "this Python's own install"
        self.popctl = popctl_command(self.python)
        # --baseline REF: an older popctl run beside this one, interleaved, on the start-up,
        # headers and purge jobs ("no worse than before the redesign", same machine, same run).
        self.baseline: list[str] | None = None
        self.baseline_name = f"popctl@{baseline}" if baseline else ""
        if baseline:
            self.baseline = install_baseline(scratch, self.env, baseline)
            out(f"baseline {baseline} installed in {scratch / 'baseline-venv'}")
        peers.PYTHON = self.python
        home = scratch / "home"
        home.mkdir()
        self.env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                        XDG_CONFIG_HOME=str(home / ".config"),
                        PYTHONPYCACHEPREFIX=str(scratch / "pycache"), LC_ALL="C.UTF-8")
        for name in [k for k in self.env if k.startswith("POPCTL_")]:
            del self.env[name]
        self.server: DovecotServer | None = None
        self.accounts: dict[str, peers.Account] = {}
        self.big_messages: list[bytes] = []
        self.counter = 0
        self.wire: dict[str, Wire] = {}  # what a command cost on the wire (CountingProxy)
        self.default_mechanism = "?"  # what --auth auto chose on Dovecot

    # --- set-up ----------------------------------------------------------------------------------

    def start(self, jobs: Sequence[str]) -> None:
        c = self.config
        names = ["mail", "purge", "huge", *(f"scale{n}" for n in c.scale)]
        users = {name: f"pw-{name}-bench" for name in names}
        self.server = start_dovecot(self.scratch / "dovecot", users)
        self.accounts = {name: peers.Account(name, pw) for name, pw in users.items()}
        started = time.perf_counter()
        messages = list(mailboxes.realistic(c.messages, big=c.big))
        for message in messages:
            self.server.deliver("mail", message)
            self.server.deliver("purge", message)
        self.big_messages = [m for m in messages if len(m) > MIB]
        if "huge" in jobs:
            self.server.deliver("huge", mailboxes.huge(c.huge))
        for n in c.scale if "scale" in jobs else c.scale[-1:] if "named" in jobs else ():
            for message in mailboxes.tiny(n):
                self.server.deliver(f"scale{n}", message)
        sizes = sorted(len(m) for m in messages)
        self.mailbox_note = (f"{len(sizes):,} messages, {sum(sizes) / 1e6:.1f} MB, median "
                             f"{statistics.median(sizes) / 1000:.1f} kB, "
                             f"{len(self.big_messages)} over 1 MiB "
                             f"({', '.join(f'{len(m) / 1e6:.1f}' for m in self.big_messages)} MB)")
        self.say(f"mailboxes ready in {time.perf_counter() - started:.1f} s: {self.mailbox_note}")
        # Warm up: Dovecot indexes each mailbox at its first session; Python compiles bytecode.
        for name in names:
            self.check(self.pop(name, self.server.port, "stat"), f"warm-up stat {name}")
        capa = self.check(self.pop("mail", self.server.port, "capa", "--format", "json",
                                   auth=None), "capa with the default auth")
        found = re.search(rb'"mechanism": "([^"]+)"', capa.stdout)
        self.default_mechanism = found.group(1).decode() if found else "?"
        for _ in range(2):
            execute([*self.popctl, "--help"], self.env)
            execute([self.python, "-c", "import click"], self.env)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @contextlib.contextmanager
    def link(self, rtt: int) -> Iterator[int]:
        """The port to connect to for ``rtt`` ms: Dovecot itself, or a delay proxy before it."""
        assert self.server is not None
        if rtt == 0 and self.config.bandwidth is None:
            yield self.server.port
            return
        with DelayProxy(("127.0.0.1", self.server.port), rtt / 2000,
                        bandwidth=self.config.bandwidth) as proxy:
            yield proxy.port

    # --- helpers ---------------------------------------------------------------------------------

    def pop(self, user: str, port: int, *args: str, auth: str | None = "USER",
            popctl: Sequence[str] | None = None) -> Run:
        """popctl as ``user``; ``auth`` None: the default (--auth auto); ``popctl``: another
        popctl's command (--baseline)."""
        account = self.accounts[user]
        env = dict(self.env, POPCTL_PASSWORD=account.password)
        command = [*(popctl or self.popctl), "--host", "127.0.0.1", "--port", str(port),
                   "--tls", "none", "--allow-plaintext", "--user", user,
                   *(["--auth", auth] if auth else []), *args]
        return execute(command, env)

    def counted(self, name: str, user: str, *args: str, auth: str | None = "USER") -> Run:
        """``pop`` through the counting proxy (no delay); its cost kept as ``wire[name]``."""
        assert self.server is not None
        with CountingProxy(("127.0.0.1", self.server.port)) as proxy:
            run = self.check(self.pop(user, proxy.port, *args, auth=auth), name)
            self.wire[name] = proxy.last()
        wire = self.wire[name]
        self.say(f"  {name:44} {wire.received:>11,} octets received, "
                 f"{wire.round_trips} round trips")
        return run

    def fresh(self, name: str) -> Path:
        self.counter += 1
        path = self.scratch / "runs" / f"{self.counter:04d}-{name}"
        path.mkdir(parents=True)
        if os.geteuid() == 0:  # getmail6 delivers as nobody, who must reach its Maildir
            for directory in (self.scratch, path.parent, path):
                os.chmod(directory, 0o755)
        return path

    @staticmethod
    def check(run: Run, what: str) -> Run:
        if run.returncode != 0:
            raise RuntimeError(f"{what} failed with status {run.returncode}:\n"
                               + run.stderr.decode("utf-8", "replace")[-2000:])
        return run

    def result(self, job: str, client: str) -> Result:
        for r in self.results:
            if (r.job, r.client) == (job, client):
                return r
        r = Result(job, client)
        self.results.append(r)
        return r

    def record(self, job: str, client: str, rtt: int, run: Run) -> None:
        r = self.result(job, client)
        r.times.setdefault(rtt, []).append(run.seconds)
        r.rss.append(run.max_rss_kib)
        self.say(f"  {job:10} {client:28} {rtt:3} ms  {run.seconds:8.3f} s  "
                 f"{run.max_rss_kib / 1024:7.1f} MiB")

    def peer_succeeded(self, run: Run, job: str, client: str, rtt: int) -> bool:
        """Whether a lock-step peer finished; if not, the failure is noted beside its figures
        and the run goes on (getmail6 has been seen to time out waiting for its own child,
        which must not cost the whole run). popctl's and mpop's failures stay fatal."""
        if run.returncode == 0:
            return True
        lines = run.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        note = f"failed at {rtt} ms: status {run.returncode}, {lines[-1][:80]}"
        self.result(job, client).notes.append(note)
        self.say(f"  {job:10} {client:28} {rtt:3} ms  {note}")
        return False

    def note_load(self) -> None:
        self.loads.append(os.getloadavg()[0])

    def maildir_count(self, path: Path) -> int:
        return sum(1 for sub in ("new", "cur") if (path / sub).is_dir()
                   for _ in (path / sub).iterdir())

    def reps(self, rtt: int, slow: bool) -> int:
        """Runs per client: lock-step peers pay a round trip per message, so fewer of them."""
        if not slow:
            return self.config.reps
        return self.config.slow_reps if rtt else min(3, self.config.reps)

    # --- the jobs --------------------------------------------------------------------------------

    def job_headers(self) -> None:
        """Headers of every message: popctl list (cold cache) vs a poplib loop vs mailfilter."""
        n = self.config.messages
        self.say("headers: From/Subject/Date of every message")
        for rtt in self.config.rtts:
            self.note_load()
            with self.link(rtt) as port:
                for rep in range(self.reps(rtt, slow=False)):
                    run = self.check(self.pop("mail", port, "list", "--no-cache"), "popctl list")
                    assert run.stdout.count(b"\n") == n + 2, run.stdout[-300:]
                    self.record("headers", "popctl list", rtt, run)
                    if self.baseline:
                        run = self.check(self.pop("mail", port, "list", "--no-cache",
                                                  popctl=self.baseline), "baseline list")
                        self.record("headers", f"{self.baseline_name} list", rtt, run)
                    run = self.check(self.pop("mail", port, "list", "--no-cache", auth=None),
                                     "popctl list, default auth")
                    self.record("headers", f"popctl list ({DEFAULT_AUTH})", rtt, run)
                    if rep >= self.reps(rtt, slow=True):
                        continue
                    if peers.available("poplib"):
                        run = self.check(execute(peers.poplib_top_loop(
                            port, self.accounts["mail"]), self.env), "poplib loop")
                        self.record("headers", "poplib TOP n 0 loop", rtt, run)
                    if peers.available("mailfilter"):
                        scratch = self.fresh("mailfilter")
                        run = execute(peers.mailfilter(scratch, port, self.accounts["mail"]),
                                      self.env)
                        if self.peer_succeeded(run, "headers", "mailfilter", rtt):
                            self.record("headers", "mailfilter", rtt, run)
        for auth in ("USER", None):  # the login's round trips, counted on the wire
            self.counted(f"list, --auth {auth or 'auto'}", "mail", "list", "--no-cache",
                         auth=auth)

    def job_warm_cache(self) -> None:
        """A second list with a warm header cache: TOP commands counted in --trace."""
        self.say("warm cache: list again, unchanged mailbox")
        for rtt in self.config.rtts:
            self.note_load()
            with self.link(rtt) as port:
                # the cache is per user@host:port, and each proxy has a port of its own
                self.check(self.pop("mail", port, "list"), "priming list")
                for _ in range(self.config.reps):
                    run = self.check(self.pop("mail", port, "--trace", "list"), "warm list")
                    tops = len(re.findall(rb"C: TOP \d+ 0", run.stderr))
                    self.record("warm cache", "popctl list (warm cache)", rtt, run)
                    self.result("warm cache", "popctl list (warm cache)").notes.append(
                        f"TOP={tops}")

    def _restore_purge(self) -> None:
        """Put the deleted big messages back, so every run purges the same mailbox."""
        assert self.server is not None
        maildir = self.server.maildir("purge")
        deadline = time.monotonic() + 10
        expected = self.config.messages - len(self.big_messages)
        while self.maildir_count(maildir) != expected and time.monotonic() < deadline:
            time.sleep(0.01)  # Dovecot expunges after QUIT
        count = self.maildir_count(maildir)
        if count != expected:
            raise RuntimeError(f"purge left {count} messages, expected {expected}")
        for message in self.big_messages:
            self.server.deliver("purge", message)

    def job_purge(self) -> None:
        """Delete the messages over 1 MiB: popctl dele vs mpop --killsize."""
        self.say("purge: delete messages larger than 1 MiB")
        for rtt in self.config.rtts:
            self.note_load()
            with self.link(rtt) as port:
                for _ in range(self.config.reps):
                    run = self.check(self.pop("purge", port, "dele", "--larger-than", "1M",
                                              "--yes"), "popctl dele")
                    self.record("purge", "popctl dele --larger-than 1M", rtt, run)
                    self._restore_purge()
                    if self.baseline:
                        run = self.check(self.pop("purge", port, "dele", "--larger-than", "1M",
                                                  "--yes", popctl=self.baseline), "baseline dele")
                        self.record("purge", f"{self.baseline_name} dele --larger-than 1M", rtt,
                                    run)
                        self._restore_purge()
                    run = self.check(self.pop("purge", port, "dele", "--larger-than", "1M",
                                              "--yes", auth=None), "popctl dele, default auth")
                    self.record("purge", f"popctl dele --larger-than 1M ({DEFAULT_AUTH})", rtt,
                                run)
                    self._restore_purge()
                    if peers.available("mpop"):
                        command = peers.mpop_killsize(self.fresh("mpop-kill"), port,
                                                      self.accounts["purge"], "1m")
                        run = self.check(execute(command, self.env), "mpop --killsize")
                        self.record("purge", "mpop --killsize=1m", rtt, run)
                        self._restore_purge()
                    if peers.available("floor"):
                        command = peers.floor_purge(port, self.accounts["purge"], MIB)
                        run = self.check(execute(command, self.env), "python+click floor")
                        self.record("purge", FLOOR, rtt, run)
                        self._restore_purge()
        self._purge_wire()

    def _purge_wire(self) -> None:
        """The purge's round trips counted on the wire, --auth USER and the default."""
        for auth in ("USER", None):
            self.counted(f"purge, --auth {auth or 'auto'}", "purge", "dele", "--larger-than",
                         "1M", "--yes", auth=auth)
            self._restore_purge()

    def job_named(self) -> None:
        """Issue 13: commands naming one message of the largest mailbox (100,000 messages in
        the full run): octets received and round trips, counted on the wire; `top 3-3` (a
        range: the whole listings) is what `top 3` cost before."""
        n = self.config.scale[-1]
        user = f"scale{n}"
        self.say(f"named: one message of {n:,}")
        self.note_load()
        spare = next(iter(mailboxes.tiny(1)))
        for _ in range(self.config.reps):
            for name, args in NAMED_COMMANDS:
                self.counted(name, user, *args)
                if args[0] == "dele":  # keep the mailbox at n messages
                    assert self.server is not None
                    self.server.deliver(user, spare)

    def job_download(self) -> None:
        """Every message into a Maildir: popctl retr vs mpop, fetchmail, getmail6."""
        n = self.config.messages
        self.say("download: every message, kept on the server")
        account = self.accounts["mail"]
        for rtt in self.config.rtts:
            self.note_load()
            with self.link(rtt) as port:
                for rep in range(self.reps(rtt, slow=False)):
                    target = self.fresh("popctl-maildir") / "Maildir"
                    run = self.check(self.pop("mail", port, "retr", "--all", "--maildir",
                                              str(target)), "popctl retr")
                    assert self.maildir_count(target) == n
                    self.record("download", "popctl retr --all --maildir", rtt, run)
                    if peers.available("mpop"):
                        scratch = self.fresh("mpop")
                        command, _ = peers.mpop(scratch, port, account, scratch / "Maildir")
                        run = self.check(execute(command, self.env), "mpop")
                        assert self.maildir_count(scratch / "Maildir") == n
                        self.record("download", "mpop (maildir)", rtt, run)
                    if rep >= self.reps(rtt, slow=True):
                        continue
                    if peers.available("fetchmail"):
                        scratch = self.fresh("fetchmail")
                        command, out = peers.fetchmail(scratch, port, account)
                        env = dict(self.env, FETCHMAILHOME=str(scratch / "fetchmailhome"))
                        run = execute(command, env)
                        if self.peer_succeeded(run, "download", "fetchmail (bsmtp)", rtt):
                            assert out.read_bytes().count(b"\nMAIL FROM:") + \
                                out.read_bytes().startswith(b"MAIL FROM:") == n
                            self.record("download", "fetchmail (bsmtp)", rtt, run)
                    if peers.available("getmail6"):
                        scratch = self.fresh("getmail6")
                        command = peers.getmail6(scratch, port, account, scratch / "Maildir")
                        run = execute(command, self.env)
                        if self.peer_succeeded(run, "download", "getmail6 (maildir)", rtt):
                            assert self.maildir_count(scratch / "Maildir") == n
                            self.record("download", "getmail6 (maildir)", rtt, run)

    def job_huge(self) -> None:
        """One huge message to a file: time and peak RSS, popctl vs mpop."""
        size = self.config.huge
        self.say(f"huge: one {size / 1e6:.0f} MB message")
        assert self.server is not None
        port = self.server.port
        self.note_load()
        for _ in range(self.config.reps):
            target = self.fresh("huge") / "message.eml"
            run = self.check(self.pop("huge", port, "retr", "1", "--output", str(target)),
                             "popctl retr huge")
            assert target.stat().st_size >= size
            self.record("huge", "popctl retr 1 --output", 0, run)
            target.unlink()
            if peers.available("mpop"):
                scratch = self.fresh("mpop-huge")
                command, _ = peers.mpop(scratch, port, self.accounts["huge"], scratch / "Maildir")
                run = self.check(execute(command, self.env), "mpop huge")
                self.record("huge", "mpop (maildir)", 0, run)
                shutil.rmtree(scratch)

    def job_scale(self) -> None:
        """stat, list --sizes-only and an NDJSON listing with headers over 1k/10k/100k-message
        mailboxes: time and memory."""
        self.say("scale: stat, list --sizes-only, list --format ndjson --no-cache")
        assert self.server is not None
        port = self.server.port
        self.note_load()
        for _ in range(self.config.reps):
            for n in self.config.scale:
                user = f"scale{n}"
                run = self.check(self.pop(user, port, "stat"), "stat")
                self.record("scale", f"popctl stat ({n:,})", 0, run)
                run = self.check(self.pop(user, port, "list", "--sizes-only"), "list")
                assert run.stdout.count(b"\n") == n + 2
                self.record("scale", f"popctl list --sizes-only ({n:,})", 0, run)
                run = self.check(self.pop(user, port, "list", "--sizes-only", "--format", "csv"),
                                 "list csv")
                self.record("scale", f"popctl list --sizes-only --format csv ({n:,})", 0, run)
                # Every header read and written as it comes (issue 13): memory must not grow.
                run = self.check(self.pop(user, port, "list", "--format", "ndjson",
                                          "--no-cache"), "list ndjson")
                assert run.stdout.count(b"\n") == n
                self.record("scale", f"{NDJSON_LIST} ({n:,})", 0, run)

    def job_startup(self) -> None:
        """popctl --version and --help against python -c 'import click'."""
        self.say("start-up")
        self.note_load()
        commands = {"python -c 'import click'": [self.python, "-c", "import click"],
                    "popctl --version": [*self.popctl, "--version"],
                    "popctl --help": [*self.popctl, "--help"],
                    "python -c pass": [self.python, "-c", "pass"]}
        if self.baseline:
            commands[f"{self.baseline_name} --version"] = [*self.baseline, "--version"]
            commands[f"{self.baseline_name} --help"] = [*self.baseline, "--help"]
        for _ in range(self.config.startup_reps):
            for name, command in commands.items():
                self.record("start-up", name, 0, self.check(execute(command, self.env), name))


# --- the report ----------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _trips(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def figures_table(bench: Bench) -> str:
    rtts = [r for r in bench.config.rtts if r]
    head = ["job", "client", *(f"{r} ms" for r in bench.config.rtts),
            *(f"round trips @{r} ms" for r in rtts), "peak RSS", "runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in bench.results:
        if r.job in ("scale", "start-up"):
            continue
        cells = [r.job, r.client, *(_seconds(r.median(t)) for t in bench.config.rtts),
                 *(_trips(r.round_trips(t)) for t in rtts),
                 f"{max(r.rss) / 1024:.0f} MiB",
                 "/".join(str(len(r.times.get(t, []))) for t in bench.config.rtts)]
        if r.notes:
            cells[1] += f" ({', '.join(sorted(set(r.notes)))})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


NDJSON_LIST = "popctl list --format ndjson --no-cache"
SCALE_COMMANDS = ("popctl stat", "popctl list --sizes-only",
                  "popctl list --sizes-only --format csv", NDJSON_LIST)


def scale_table(bench: Bench) -> tuple[str, dict[str, tuple[float, float]]]:
    """Time and RSS per size, and the per-message slope between the two largest mailboxes."""
    counts = bench.config.scale
    lines = ["| command | " + " | ".join(f"{n:,} messages" for n in counts)
             + " | per message (slope) |", "|" + "---|" * (len(counts) + 2)]
    slopes: dict[str, tuple[float, float]] = {}
    for name in SCALE_COMMANDS:
        cells, points = [], []
        if not any(r.job == "scale" for r in bench.results):
            break
        for n in counts:
            r = bench.result("scale", f"{name} ({n:,})")
            t = r.median(0) or 0.0
            rss = statistics.median(r.rss) * 1024
            points.append((n, t, rss))
            cells.append(f"{t:.3f} s, {rss / MIB:.1f} MiB")
        (n1, t1, m1), (n2, t2, m2) = points[-2], points[-1]
        per_time, per_byte = (t2 - t1) / (n2 - n1), (m2 - m1) / (n2 - n1)
        slopes[name] = (per_time, per_byte)
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {per_time * 1e6:.1f} µs, {per_byte:.0f} bytes |")
    return "\n".join(lines), slopes


def startup_table(bench: Bench) -> str:
    lines = ["| command | median | ratio to import click |", "|---|---|---|"]
    base = bench.result("start-up", "python -c 'import click'").median(0) or 1.0
    for r in bench.results:
        if r.job == "start-up":
            t = r.median(0) or 0.0
            lines.append(f"| {r.client} | {t * 1000:.0f} ms | {t / base:.2f}x |")
    return "\n".join(lines)


def targets(bench: Bench, slopes: dict[str, tuple[float, float]]) -> str:
    def med(job: str, client: str, rtt: int) -> float | None:
        return bench.result(job, client).median(rtt)

    rows: list[tuple[str, str, bool | None]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        rows.append((target, measured, met))

    rtt = 20 if 20 in bench.config.rtts else max(bench.config.rtts)
    popctl_list = med("headers", "popctl list", rtt)
    loop = med("headers", "poplib TOP n 0 loop", rtt)
    if popctl_list and loop:
        ratio = loop / popctl_list
        add(f"list, {rtt} ms: ≥ 40x faster than the poplib loop",
            f"{ratio:.1f}x ({_seconds(loop)} / {_seconds(popctl_list)})", ratio >= 40)
    trips = bench.result("headers", "popctl list").round_trips(rtt)
    if trips is not None:
        add(f"list, {rtt} ms: ≤ 10 round trips over 0 ms", f"{trips:.1f}", trips <= 10)
    trips = bench.result("purge", "popctl dele --larger-than 1M").round_trips(rtt)
    if trips is not None:
        add(f"purge, {rtt} ms: ≤ 8 round trips over 0 ms", f"{trips:.1f}", trips <= 8)
    dele, kill = med("purge", "popctl dele --larger-than 1M", rtt), \
        med("purge", "mpop --killsize=1m", rtt)
    if dele and kill:
        add(f"purge, {rtt} ms: no slower than mpop --killsize",
            f"{dele / kill:.2f}x ({_seconds(dele)} / {_seconds(kill)})", dele <= kill)
        floor = med("purge", FLOOR, rtt)
        if floor:
            add(f"(for reference) {FLOOR}, {rtt} ms, against mpop --killsize",
                f"{floor / kill:.2f}x ({_seconds(floor)} / {_seconds(kill)})", None)
    retr, mpop = med("download", "popctl retr --all --maildir", rtt), \
        med("download", "mpop (maildir)", rtt)
    if retr and mpop:
        add(f"retr --all --maildir, {rtt} ms: ≤ 1.1x mpop",
            f"{retr / mpop:.2f}x ({_seconds(retr)} / {_seconds(mpop)})", retr <= 1.1 * mpop)
    huge = bench.result("huge", "popctl retr 1 --output")
    if huge.rss:
        peak = max(huge.rss) / 1024
        add(f"{bench.config.huge / 1e6:.0f} MB message: peak RSS < 60 MB", f"{peak:.1f} MiB",
            peak < 60)
        mine, theirs = huge.median(0), med("huge", "mpop (maildir)", 0)
        if mine and theirs:
            add("… and time ≤ 1.5x mpop", f"{mine / theirs:.2f}x ({_seconds(mine)} / "
                f"{_seconds(theirs)})", mine <= 1.5 * theirs)
    ndjson = [bench.result("scale", f"{NDJSON_LIST} ({n:,})") for n in bench.config.scale]
    if ndjson[-1].times:
        t, peak = ndjson[-1].median(0) or 0.0, max(ndjson[-1].rss) / 1024
        add(f"{bench.config.scale[-1]:,} messages, {NDJSON_LIST.removeprefix('popctl ')}: "
            "≤ 2.5 s and peak RSS ≤ 40 MiB", f"{_seconds(t)}, {peak:.1f} MiB",
            t <= 2.5 and peak <= 40)
    for name in SCALE_COMMANDS:
        if name in slopes:
            per_time, per_byte = slopes[name]
            add(f"{bench.config.scale[-1]:,} messages, {name.removeprefix('popctl ')}: "
                "< 300 bytes per message", f"{per_byte:.0f} bytes, {per_time * 1e6:.1f} µs "
                "per message", per_byte < 300)
    click = med("start-up", "python -c 'import click'", 0)
    for name, limit in (("popctl --version", 1.3), ("popctl --help", 1.5)):
        t = med("start-up", name, 0)
        if t and click:
            add(f"`{name}` ≤ {limit}x `import click`", f"{t / click:.2f}x", t <= limit * click)
    if bench.baseline:
        # "No worse" with a 5 % margin: closer than that, repeated runs here disagree.
        base = bench.baseline_name
        for job, mine, theirs, at in (
                ("start-up", "popctl --version", f"{base} --version", 0),
                ("start-up", "popctl --help", f"{base} --help", 0),
                ("headers", "popctl list", f"{base} list", rtt),
                ("purge", "popctl dele --larger-than 1M", f"{base} dele --larger-than 1M", rtt)):
            now, then = med(job, mine, at), med(job, theirs, at)
            if now and then:
                add(f"{mine} at {at} ms: no worse than {base}",
                    f"{now / then:.2f}x ({_seconds(now)} / {_seconds(then)})",
                    now <= 1.05 * then)
    wire_targets(bench, add)
    warm = bench.result("warm cache", "popctl list (warm cache)")
    if warm.notes:
        tops = sorted({int(n.removeprefix("TOP=")) for n in warm.notes})
        add("second list, warm cache: 0 TOP", f"TOP sent: {tops}", tops == [0])
    lines = ["| target | measured | met |", "|---|---|---|"]
    for target, measured, met in rows:
        verdict = "-" if met is None else "yes" if met else "NO"
        lines.append(f"| {target} | {measured} | {verdict} |")
    return "\n".join(lines)


def wire_table(bench: Bench) -> str:
    """What each counted command cost on the wire, and its round trips beyond the login."""
    login = bench.wire.get(LOGIN_ONLY)
    lines = ["| command | octets received | octets sent | round trips | beyond the login |",
             "|---|---|---|---|---|"]
    for name, wire in bench.wire.items():
        # the purge and the paired lists log in both ways: "beyond the login" is for the others
        beyond = "-" if login is None or name.startswith(("purge", "list, --auth")) \
            else str(wire.round_trips - login.round_trips)
        lines.append(f"| {name} | {wire.received:,} | {wire.sent:,} | {wire.round_trips} | "
                     f"{beyond} |")
    return "\n".join(lines)


def paired_round_trips(slower: Result, faster: Result, rtt: int) -> float | None:
    """The round trips ``slower`` costs over ``faster`` at ``rtt``, from runs made in pairs.

    Each rep runs both one after the other, so the difference within a pair is free of the
    machine's drift between reps, which a difference of four medians (at ``rtt`` and at 0 ms,
    of each client) keeps: the median difference at ``rtt`` less the median difference at
    0 ms (what costs the same without delay, such as SCRAM's computation), over the RTT.
    """
    def differences(delay: int) -> list[float]:
        a, b = slower.times.get(delay, []), faster.times.get(delay, [])
        return [x - y for x, y in zip(a, b, strict=True)] if a and len(a) == len(b) else []

    delayed, idle = differences(rtt), differences(0)
    if not rtt or not delayed or not idle:
        return None
    return (statistics.median(delayed) - statistics.median(idle)) / (rtt / 1000)


def wire_targets(bench: Bench, add: Callable[[str, str, bool | None], None]) -> None:
    """Issue 13's targets for a named message and for the default auth."""
    login = bench.wire.get(LOGIN_ONLY)
    n = bench.config.scale[-1]
    for name in ("top 3", "retr 3", "dele 3 --yes", "list 3"):
        wire = bench.wire.get(name)
        if wire is None or login is None:
            continue
        beyond = wire.round_trips - login.round_trips
        # dele waits for QUIT's reply as well: it is what says the deletion was made.
        allowed = 1
        add(f"`{name}`, {n:,} messages: < 5 KB received, ≤ {allowed} round trip(s) beyond "
            "the login", f"{wire.received:,} octets, {beyond}",
            wire.received < 5 * 1024 and beyond <= allowed)
    # Issue 13's "within one round trip of --auth USER", judged as this issue's other round-trip
    # targets are: counted on the wire. The default's dialogue costs exactly one round trip
    # more (SCRAM's server-first) by construction, so a timed estimate of it, shown beside,
    # lands on either side of 1.0 by its noise (docs/PERFORMANCE.md, "Reading the targets").
    rtt = 20 if 20 in bench.config.rtts else max(bench.config.rtts)
    for job, client, counted in (("purge", "popctl dele --larger-than 1M", "purge"),
                                 ("headers", "popctl list", "list")):
        user, auto = bench.wire.get(f"{counted}, --auth USER"), \
            bench.wire.get(f"{counted}, --auth auto")
        if user and auto:
            add(f"{counted}, default auth ({bench.default_mechanism}): ≤ 1 round trip more "
                "than --auth USER (counted)", f"{auto.round_trips} vs {user.round_trips}",
                auto.round_trips <= user.round_trips + 1)
        mine = bench.result(job, client)
        default = bench.result(job, f"{client} ({DEFAULT_AUTH})")
        slow, fast = default.median(rtt), mine.median(rtt)
        idle, base_idle = default.median(0), mine.median(0)
        extra = paired_round_trips(default, mine, rtt)
        if not (slow and fast and idle and base_idle) or extra is None:
            continue
        # Round trips in time as everywhere in this report (Result.round_trips): what the delay
        # adds over the same job at 0 ms. A mechanism's computation (SCRAM's PBKDF2 on both
        # sides) costs the same at 0 ms and is shown apart: it is no round trip.
        slope = ""
        far = max(bench.config.rtts)
        if far > rtt:
            a, b = paired_round_trips(default, mine, far), extra
            if a is not None:  # the difference's growth from rtt to far, per round trip
                slope = f"; {(a * far - b * rtt) / (far - rtt):+.2f} from {rtt} to {far} ms"
        add(f"(for reference) {client.removeprefix('popctl ')}, {rtt} ms, default auth "
            f"({bench.default_mechanism}) against --auth USER, timed",
            f"{extra:+.1f} round trips{slope} ({_seconds(slow)} / {_seconds(fast)}; at 0 ms "
            f"{_seconds(idle)} / {_seconds(base_idle)})", None)


def report(bench: Bench, elapsed: float) -> str:
    scale, slopes = scale_table(bench)
    versions = ", ".join(f"{name} {peers.version(name)}" for name in
                         ("mpop", "fetchmail", "getmail6", "mailfilter") if peers.available(name))
    dovecot = subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip() if Path("/usr/sbin/dovecot").exists() \
        else "?"
    load = (f"load average (1 min) during the jobs: {min(bench.loads):.2f} to "
            f"{max(bench.loads):.2f}" if bench.loads else "")
    parts = [
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' (--quick: small N, not figures to quote)' if bench.config.quick else ''}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Dovecot {dovecot}; "
        f"popctl {bench.installed}; "
        f"{versions}; {load}; {elapsed / 60:.1f} minutes in all.",
        f"Mailbox: {bench.mailbox_note}. Medians of {bench.config.reps} runs for popctl and "
        f"mpop, of {min(3, bench.config.reps)} for the lock-step clients at 0 ms and "
        f"{bench.config.slow_reps} when delayed; round trips "
        "= (time at that RTT - time at 0 ms) / RTT.",
        "### Figures\n\n" + figures_table(bench)]
    if slopes:
        parts.append("### Scale (no delay; 300-octet messages)\n\n" + scale)
    if bench.wire:
        parts.append(f"### On the wire (no delay; counted by benchmarks/wire.py; the named "
                     f"commands on the {bench.config.scale[-1]:,}-message mailbox; --auth auto "
                     f"chose {bench.default_mechanism})\n\n" + wire_table(bench))
    if any(r.job == "start-up" for r in bench.results):
        parts.append("### Start-up\n\n" + startup_table(bench))
    parts.append("### Targets (issue 5)\n\n" + targets(bench, slopes))
    return "\n\n".join(parts)


def write_markdown(text: str, path: Path) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if BEGIN in old and END in old:
            new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
            path.write_text(new, encoding="utf-8")
            return
        path.write_text(old.rstrip() + "\n\n" + block + "\n", encoding="utf-8")
        return
    path.write_text("# popctl performance\n\n" + block + "\n", encoding="utf-8")


PEERS = ("mpop", "fetchmail", "getmail6", "mailfilter", "poplib", "floor")
JOBS = ("startup", "headers", "warm_cache", "purge", "download", "huge", "scale", "named")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, one run: a smoke test")
    parser.add_argument("--reps", type=int, help="runs of popctl and mpop (default 7)")
    parser.add_argument("--rtts", help="round-trip times in ms, e.g. 0,20,50")
    parser.add_argument("--bandwidth", type=float,
                        help="cap the proxy at this many Mbit/s each way (default: none)")
    parser.add_argument("--only", help=f"comma-separated jobs among {', '.join(JOBS)}")
    parser.add_argument("--peers", help="comma-separated peers to run beside popctl among "
                        f"{', '.join(PEERS)} (default: every one installed)")
    parser.add_argument("--output", type=Path,
                        help="Markdown file to update (default docs/PERFORMANCE.md; "
                             "--quick writes none unless given)")
    parser.add_argument("--install", choices=("venv", "here"),
                        help="popctl as a user installs it, in a fresh venv (default), or as "
                             "installed for this Python (default with --quick)")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run popctl as of this git commit (start-up, headers, purge), "
                             "interleaved with the current one")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    changes: dict[str, object] = {}
    if args.reps:
        changes["reps"] = args.reps
    if args.rtts:
        changes["rtts"] = tuple(int(x) for x in args.rtts.split(","))
        if 0 not in changes["rtts"]:  # type: ignore[operator]
            parser.error("--rtts must include 0 (round trips are counted against it)")
    if args.bandwidth:
        changes["bandwidth"] = args.bandwidth * 1e6 / 8
    if changes:
        from dataclasses import replace

        config = replace(config, **changes)  # type: ignore[arg-type]
    if args.peers is not None:
        wanted = set(filter(None, args.peers.split(",")))
        if wanted - set(PEERS):
            parser.error(f"unknown peer(s): {', '.join(sorted(wanted - set(PEERS)))}")
        peers.SELECTED = wanted
    jobs = args.only.split(",") if args.only else list(JOBS)
    unknown = set(jobs) - set(JOBS)
    if unknown:
        parser.error(f"unknown job(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="popctl-bench-", dir="/tmp") as scratch:
        bench = Bench(config, Path(scratch), lambda line: print(line, flush=True),
                      venv=args.install == "venv" if args.install else not args.quick,
                      baseline=args.baseline)
        try:
            bench.start(jobs)
            for job in JOBS:
                if job in jobs:
                    getattr(bench, f"job_{job}")()
        finally:
            bench.stop()
    text = report(bench, time.perf_counter() - started)
    print()
    print(text)
    output = args.output if args.output else (None if args.quick else PERFORMANCE_MD)
    if output is not None:
        write_markdown(text, output)
        print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

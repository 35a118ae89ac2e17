"""Delivery to a program (``retr --pipe COMMAND``): one process per message, the message on its
standard input, as mpop's ``delivery mda`` and fetchmail's ``mda`` hand mail to procmail,
maildrop or sendmail.

Decisions:

* The command runs with ``/bin/sh -c`` (as mpop's and fetchmail's MDA commands, and popctl's
  own password_command): ``procmail -d "$USER"`` and pipelines work as written in a crontab.
* The message is spooled to an unnamed temporary file first, and the program started only once
  all of it has arrived: a connection lost midway never hands a program half a message. Its
  standard input is that file (rewound): a regular file, which an MDA may also seek in.
* LF line ends (CRLF converted, lone CRs kept), as every Unix MDA expects and as popctl's
  Maildir and mbox store; no ``From `` line (an MDA writes its own).
* Delivered means: the program exited 0. A non-zero status, a signal, or no exit within
  ``timeout`` seconds (the whole process group is then stopped) is a StoreError (exit 1)
  naming the message, and the batch stops: nothing is deleted (see stores/__init__.py).
* Its standard output goes to popctl's standard error, so that a report on stdout
  (``--format ndjson``) stays clean; its standard error is popctl's.
* Environment: popctl's own, without POPCTL_PASSWORD, plus POPCTL_NUMBER, POPCTL_UID (empty
  without UIDL), POPCTL_ACCOUNT (the account, else user@host:port) and POPCTL_SENDER (the
  address of the first Return-Path, else MAILER-DAEMON; only ``[\\x21-\\x7e]``, as mpop's
  ``%F``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Final

from popctl.errors import UsageError
from popctl.stores.base import (
    _HEAD_LIMIT,
    MessageSink,
    StoreError,
    _os_error,
    _SinkBase,
    _Spool,
    _StoreBase,
)
from popctl.stores.convert import _CRLFToLF
from popctl.stores.mbox import envelope_sender

# How long one delivery may take. A server may drop a client idle for 10 minutes (RFC 1939's
# autologout timer is at least that), and the session waits on the program: past that, waiting
# longer would only lose the session. procmail waiting for a lock takes seconds, not minutes.
PIPE_TIMEOUT: Final = 600.0
# After SIGTERM, how long the program's process group has to exit before SIGKILL.
_TERM_GRACE: Final = 1.0


class PipeStore(_StoreBase):
    """Each message handed to ``command`` (run by /bin/sh) on its standard input."""

    def __init__(self, command: str, *, timeout: float | None = None,
                 account: str = "") -> None:
        super().__init__()
        if not command.strip():
            raise UsageError("the command to deliver to is empty")
        self.command = command
        self.timeout = PIPE_TIMEOUT if timeout is None else timeout
        self.account = account  # POPCTL_ACCOUNT: the caller sets it once logged in

    def open(self, number: int, uid: str | None) -> MessageSink:
        self._check_open()
        return _PipeSink(self, number, uid)


class _PipeSink(_SinkBase):
    def __init__(self, store: PipeStore, number: int, uid: str | None) -> None:
        self._spool = _Spool()
        super().__init__(store)
        self._pipe = store
        self._number = number
        self._uid = uid
        self._to_lf = _CRLFToLF()

    def write(self, data: bytes, /) -> None:
        self._check_writable()
        self._spill(self._to_lf.feed(data))

    def _spill(self, data: bytes, *, final: bool = False) -> None:
        try:
            self._spool.write(data, final=final)
        except OSError as exc:
            self.discard()
            raise _os_error("write to", self._spool.where, exc) from None

    def _what(self) -> str:
        return f"message {self._number}" + (f" (uid {self._uid})" if self._uid else "")

    def commit(self) -> str:
        if self._state == "committed":
            return self._result
        self._check_writable()
        self._spill(self._to_lf.finish(), final=True)
        store = self._pipe
        try:
            fd = self._spool.fileno()
            head = os.pread(fd, _HEAD_LIMIT, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            status = _deliver(store.command, fd, store.timeout, {
                "POPCTL_NUMBER": str(self._number), "POPCTL_UID": self._uid or "",
                "POPCTL_ACCOUNT": store.account, "POPCTL_SENDER": envelope_sender(head)})
        except OSError as exc:
            self.discard()
            raise StoreError(f"cannot deliver {self._what()}: cannot run /bin/sh: "
                             f"{exc.strerror or exc}", path=store.command) from None
        except BaseException:
            self.discard()
            raise
        if status is None:
            self.discard()
            raise StoreError(f"delivering {self._what()}: {store.command!r} did not finish "
                             f"within {store.timeout:g} s and was stopped; the message is kept "
                             "on the server", path=store.command)
        if status != 0:
            self.discard()
            how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            raise StoreError(f"delivering {self._what()}: {store.command!r} failed ({how}); "
                             "the message is kept on the server", path=store.command)
        self._result = f"|{store.command}"
        self._finished("committed")
        self._spool.close()
        return self._result

    def discard(self) -> None:
        if self._state != "open":
            return
        self._spool.close()
        self._finished("discarded")


def _deliver(command: str, stdin: int, timeout: float, variables: dict[str, str]) -> int | None:
    """Run ``command`` with ``stdin``; its exit status (negative: the signal), or None when it
    did not exit within ``timeout`` seconds (its process group is then stopped). Interrupted
    (Ctrl-C), it is stopped too: nothing it started is left running."""
    environment = {k: v for k, v in os.environ.items() if k != "POPCTL_PASSWORD"}
    environment.update(variables)
    # Its own session: its whole process group can be stopped, and Ctrl-C reaches popctl only.
    process = subprocess.Popen(["/bin/sh", "-c", command], stdin=stdin, stdout=2,
                               env=environment, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        return None
    except BaseException:
        _stop_group(process)
        raise


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_TERM_GRACE)
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is gone already
    process.wait()

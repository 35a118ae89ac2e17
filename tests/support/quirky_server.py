"""A small POP3 server with the quirks of issue 11, for the kill test
(tests/support/kill_harness.py).

Real servers that Debian packages lack UIDL or give several messages one UID only in ways a
test cannot steer (popa3d hashes a few header fields), so this one does it on purpose:

* ``no-uidl``: CAPA does not list UIDL and UIDL answers -ERR; file names can only come from
  the message numbers, which every session starts again at 1.
* ``shared-uids``: every message gets one of three UIDs, ``shared``, ``shared x`` (a space:
  popctl reads the first word, ``shared`` again) and ``shared\\xff`` (not UTF-8).

Otherwise it is a plain RFC 1939 maildrop on 127.0.0.1 (USER/PASS, PIPELINING announced, one
session at a time): DELE marks, only QUIT removes (a client killed mid-session deletes
nothing), and ``messages()`` waits for the session to end before it answers, as Dovecot's
mail processes are waited for.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from types import TracebackType
from typing import Literal

Quirk = Literal["no-uidl", "shared-uids"]
SHARED_UIDS = (b"shared", b"shared x", b"shared\xff")
_MAX_LINE = 1024


class QuirkyServer:
    """``with QuirkyServer("no-uidl") as server:``; ``deliver``, ``messages``, ``options``."""

    def __init__(self, quirk: Quirk, *, user: str = "alice",
                 password: str = "kill-test-pw") -> None:
        self.quirk = quirk
        self.users = {user: password}
        self._serial = itertools.count(1)
        self._messages: list[tuple[int, bytes]] = []  # (serial, CRLF text)
        self._changed = threading.Condition()
        self._in_session = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="quirky-pop3", daemon=True)

    def __enter__(self) -> QuirkyServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def options(self) -> list[str]:
        """popctl's connection options for this server."""
        return ["--host", "127.0.0.1", "--port", str(self.port), "--tls", "none",
                "--allow-plaintext"]

    def deliver(self, user: str, data: bytes) -> None:
        text = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not text.endswith(b"\r\n"):
            text += b"\r\n"
        with self._changed:
            self._messages.append((next(self._serial), text))

    def messages(self, timeout: float = 10.0) -> list[bytes]:
        """The messages on the server once no session is running."""
        with self._changed:
            if not self._changed.wait_for(lambda: not self._in_session, timeout):
                raise AssertionError("a POP3 session did not end")
            return [text for _, text in self._messages]

    # --- serving ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _uid(self, serial: int) -> bytes:
        return SHARED_UIDS[serial % 3] if self.quirk == "shared-uids" else b"%d" % serial

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = conn.makefile("rb")
        box: list[tuple[int, bytes]] | None = None  # the session's snapshot once logged in
        deleted: set[int] = set()
        user = ""
        try:
            conn.sendall(b"+OK quirky POP3 ready\r\n")
            while True:
                line = reader.readline(_MAX_LINE)
                if not line.endswith(b"\n"):
                    return  # EOF (a client killed): nothing is removed
                verb, _, argument = line.strip().decode("ascii", "replace").partition(" ")
                verb = verb.upper()
                if verb == "QUIT":
                    if box is not None:  # UPDATE; the lock goes in `finally`
                        self._expunge({box[n - 1][0] for n in deleted})
                    conn.sendall(b"+OK bye\r\n")
                    return
                if verb == "CAPA":
                    conn.sendall(b"+OK\r\nUSER\r\nTOP\r\nPIPELINING\r\n"
                                 + (b"UIDL\r\n" if self.quirk != "no-uidl" else b"") + b".\r\n")
                elif box is None:
                    if verb == "USER":
                        user = argument
                        conn.sendall(b"+OK\r\n")
                    elif verb == "PASS" and self.users.get(user) == argument:
                        box = self._lock()
                        conn.sendall(b"+OK logged in\r\n" if box is not None
                                     else b"-ERR [IN-USE] another session is running\r\n")
                    else:
                        conn.sendall(b"-ERR not now\r\n")
                else:
                    conn.sendall(self._transaction(verb, argument, box, deleted))
        except OSError:
            return
        finally:
            if box is not None:
                self._unlock()
            conn.close()

    def _transaction(self, verb: str, argument: str, box: list[tuple[int, bytes]],
                     deleted: set[int]) -> bytes:
        live = [n for n in range(1, len(box) + 1) if n not in deleted]
        number = int(argument.split()[0]) if argument[:1].isdigit() else 0
        if argument and number not in live:
            return b"-ERR no such message\r\n"
        if verb == "STAT":
            return b"+OK %d %d\r\n" % (len(live), sum(len(box[n - 1][1]) for n in live))
        if verb == "LIST":
            if argument:
                return b"+OK %d %d\r\n" % (number, len(box[number - 1][1]))
            return b"+OK\r\n" + b"".join(b"%d %d\r\n" % (n, len(box[n - 1][1]))
                                         for n in live) + b".\r\n"
        if verb == "UIDL" and self.quirk != "no-uidl":
            if argument:
                return b"+OK %d %s\r\n" % (number, self._uid(box[number - 1][0]))
            return b"+OK\r\n" + b"".join(b"%d %s\r\n" % (n, self._uid(box[n - 1][0]))
                                         for n in live) + b".\r\n"
        if verb == "RETR" and number:
            text = box[number - 1][1]
            stuffed = b"".join(b"." + line if line.startswith(b".") else line
                               for line in text.splitlines(keepends=True))
            return b"+OK\r\n" + stuffed + b".\r\n"
        if verb == "DELE" and number:
            deleted.add(number)
            return b"+OK marked\r\n"
        if verb == "RSET":
            deleted.clear()
            return b"+OK\r\n"
        if verb == "NOOP":
            return b"+OK\r\n"
        return b"-ERR unknown command\r\n"

    def _lock(self) -> list[tuple[int, bytes]] | None:
        with self._changed:
            if self._in_session:
                return None
            self._in_session = True
            return list(self._messages)

    def _unlock(self) -> None:
        with self._changed:
            self._in_session = False
            self._changed.notify_all()

    def _expunge(self, serials: set[int]) -> None:
        with self._changed:
            self._messages = [m for m in self._messages if m[0] not in serials]

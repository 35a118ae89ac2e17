"""A POP3 session: one Python method per POP3 command, typed results, domain exceptions.

Batches (headers, retrieval, deletion, listings) are pipelined (RFC 2449) in a bounded window
when the server announces PIPELINING, and sent one at a time otherwise. Leaving the ``with``
block normally sends QUIT, which commits deletions; leaving it by an exception closes the
connection without QUIT, so the server rolls back every deletion of this session.

Sending, reading, the deadlines of every wait and the trace are ``Exchange``'s (exchange.py),
which ``Session`` extends. Tests patch this module's limits (MAX_HEADER_BYTES,
MAX_LISTING_BYTES) by name.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Final, Literal, NamedTuple

from popctl import auth
from popctl.display import Redactor, safe
from popctl.errors import (
    AuthenticationError,
    CapabilityError,
    LocalProtocolError,
    NetworkTimeoutError,
    NoSuchMessageError,
    PopctlError,
    RemoteProtocolError,
    ServerError,
    TLSError,
    TransportError,
)
from popctl.exchange import (
    MAX_IN_FLIGHT,
    Exchange,
    Sink,
    TraceHook,
    _Collector,
    _new_request,
    _Request,
    default_session_timeout,
    server_error,
)
from popctl.listing import (
    MAX_MESSAGE_NUMBER,
    ListingSink,
    SizeListing,
    UidListing,
    check_number,
    highest_allowed,
    parse_int,
    parse_pair,
    parse_size,
)
from popctl.models import (
    Capabilities,
    Credentials,
    Endpoint,
    Lookup,
    MailboxStat,
    MessageHeaders,
    MessageSize,
    MessageUid,
    Retrieved,
    TLSInfo,
    TLSMode,
)
from popctl.protocol import (
    CLOSED,
    Challenge,
    Command,
    Greeting,
    Reply,
)
from popctl.transport import PendingConnection, PendingTLSContext, Transport

# A header block larger than this is a broken or hostile server; the rest is read and dropped.
MAX_HEADER_BYTES: Final = 256 * 1024

# A whole LIST, UIDL or CAPA reply read: 100,000 messages' UIDL is about 3 MB. LIST and UIDL
# are parsed as they arrive into arrays (popctl/listing.py), a few octets per message.
MAX_LISTING_BYTES: Final = 64 * 1024 * 1024

# RFC 1939 makes TOP optional (mpopd has none): without it, headers cost whole messages.
NO_TOP: Final = ("the server does not support TOP, so headers cannot be read without "
                 "downloading whole messages")

# Built as the exchange builds its requests (exchange._new_request): one per message listed.
_new_headers = functools.partial(tuple.__new__, MessageHeaders)


class _Listing(NamedTuple):
    reply: Reply
    sink: ListingSink


_Scan = tuple[_Listing, _Listing]  # UIDL's and LIST's


# What may ride with the login (Session.login): UIDL and LIST, the messages named, or UIDL.
Prefetch = Lookup | Literal["scan", "uids"] | None


class _Named(NamedTuple):
    """The replies to STAT, UIDL n and LIST n of the messages a user named (see lookup)."""

    numbers: tuple[int, ...]
    uids: bool
    replies: list[tuple[_Request, Reply]]


def _mailbox_of(count: int) -> str:
    """How selection.select says how many messages there are (a test keeps the two alike)."""
    if count == 0:
        return "the mailbox is empty"
    return f"the mailbox has {count} message{'s' if count != 1 else ''}"


class Session(Exchange):
    """An open POP3 connection. Use ``Session.connect`` and a ``with`` block."""

    def __init__(self, transport: Transport, *, trace: TraceHook | None = None,
                 pipelining: bool | None = None, session_timeout: float | None = None) -> None:
        super().__init__(transport, trace=trace, pipelining=pipelining,
                         session_timeout=session_timeout)
        self._stat_count: int | None = None  # STAT's count, while it bounds a listing
        self._prefetched: _Scan | None = None  # UIDL and LIST read with the login (see login)
        self._prefetched_uids: _Listing | None = None  # UIDL alone read with the login
        self._prefetched_named: _Named | None = None  # or LIST n and UIDL n (see lookup)
        self.greeting: Greeting | None = None
        self.login_capabilities = Capabilities(known=False)  # as offered before login
        self.mechanism: str | None = None

    # --- opening and closing ---------------------------------------------------------------------

    @classmethod
    def connect(cls, endpoint: Endpoint, *, trace: TraceHook | None = None,
                pipelining: bool | None = None, ahead: PendingConnection | None = None
                ) -> Session:
        """Connect, negotiate TLS as ``endpoint`` says, read the greeting and CAPA.

        ``ahead``: the connection to ``endpoint`` already begun, if any (PendingConnection)."""
        started = time.monotonic()
        if ahead is not None and not ahead.is_for(endpoint):
            ahead.close()  # begun to another endpoint, or taken already
            ahead = None
        transport, tls = (ahead or PendingConnection(endpoint)).take()
        session = cls(transport, trace=trace, pipelining=pipelining,
                      session_timeout=endpoint.session_timeout)
        session._waited = time.monotonic() - started
        try:
            session._note(f"connected to {endpoint.host} port {endpoint.effective_port}")
            if endpoint.tls is TLSMode.IMPLICIT:
                session._start_tls(endpoint, tls)
            session._read_greeting()
            session.capa()
            if endpoint.tls is TLSMode.STARTTLS:
                session.stls(endpoint, tls)
        except BaseException:
            session.abort()
            raise
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None and not self._closed:
            self.quit()
        else:
            if isinstance(exc, PopctlError):
                self._redact_error(exc)  # e.g. a malformed listing line quoted in the message
            self.abort()

    def abort(self) -> None:
        """Close without QUIT: the server rolls back this session's deletions."""
        if not self._closed:
            self._closed = True
            self._note("closing without QUIT (marked deletions are rolled back)")
            self._transport.close()

    def _marks_changed(self, verb: str) -> None:
        super()._marks_changed(verb)
        # LIST and UIDL read earlier no longer show the messages as they are now
        self._prefetched = self._prefetched_named = None
        self._prefetched_uids = None
        if verb == "RSET":
            self._stat_count = None  # the messages unmarked are listed again

    @property
    def tls(self) -> TLSInfo | None:
        return self._transport.tls

    @property
    def encrypted(self) -> bool:
        return self._transport.tls is not None

    def lacks(self, capability: str) -> bool:
        """Whether CAPA proves the server lacks ``capability`` (never, if it has no CAPA)."""
        return self.capabilities.known and capability not in self.capabilities

    # --- connection set-up -----------------------------------------------------------------------

    def _read_greeting(self) -> None:
        event = self._next()
        if not isinstance(event, Greeting):
            raise RemoteProtocolError("the server sent no greeting")
        if not event.ok:
            fake = Reply(Command("NOOP"), False, event.text, event.code)
            raise server_error(fake, what="connecting")
        self.greeting = event

    def _start_tls(self, endpoint: Endpoint, tls: PendingTLSContext | None = None) -> None:
        context = (tls or PendingTLSContext(endpoint)).result()
        # One deadline for the whole handshake: the read timeout (less if the session's is near).
        wait = self._allowed(self._timeout)
        started = time.monotonic()
        try:
            info = self._transport.start_tls(context, fingerprint=endpoint.fingerprint,
                                             timeout=wait)
        except NetworkTimeoutError as e:
            if wait < self._timeout:
                raise self._session_expired() from e
            raise
        finally:
            self._waited += time.monotonic() - started
        self._note(f"TLS {info.version} {info.cipher}, certificate SHA-256 {info.cert_sha256}"
                   + ("" if info.verified else " (NOT VERIFIED: verification is off)"))

    def stls(self, endpoint: Endpoint, tls: PendingTLSContext | None = None) -> None:
        """RFC 2595: upgrade to TLS, then forget and re-read the capabilities. ``tls``: the
        context, if it is being built already (Session.connect)."""
        if self.capabilities.known and "STLS" not in self.capabilities:
            raise TLSError(
                "the server does not offer STLS, so the connection cannot be encrypted "
                "(an attacker may have removed it); refusing to continue", hint="no-stls")
        command = Command("STLS")
        self._send(command)
        reply = self._reply(command)
        if not reply.ok:
            raise TLSError(f"the server refused STLS: {reply.text}; refusing to continue "
                           "without TLS")
        self._start_tls(endpoint, tls)
        self.capabilities = Capabilities(known=False)
        self.capa()

    # --- authentication --------------------------------------------------------------------------

    def login(self, credentials: Credentials, *, prefetch: Prefetch = None) -> str:
        """Authenticate with the best mechanism allowed; return the mechanism used.

        ``prefetch`` is what the command will ask first, sent (to a server that pipelines) in
        the login's last round trip, behind PASS or the last message of a SASL exchange:
        ``"scan"``, UIDL and LIST, for the next ``scan()`` (one round trip fewer for every
        command that lists the mailbox); a ``Lookup`` (the messages a user named), STAT,
        UIDL n and LIST n, for the next ``lookup(numbers)``, and with ``lookup.delete`` TOP n 0
        and DELE n too (whatever fails makes the command fail, and the session end without
        QUIT); ``"uids"``, UIDL alone, for the next ``uidl()``. In the AUTHORIZATION state a
        server refuses them, so a failed login loses nothing.
        """
        lookup = prefetch if isinstance(prefetch, Lookup) else None
        scan, uids = prefetch == "scan", prefetch == "uids"
        self.login_capabilities = self.capabilities
        self._prefetched = self._prefetched_named = None
        self._prefetched_uids = None
        self._redact = Redactor((credentials.password, credentials.oauth2_token))
        try:
            name = auth.choose_mechanism(
                credentials, self.capabilities, encrypted=self.encrypted,
                apop_timestamp=self.greeting.timestamp if self.greeting else None)
        except PopctlError as e:
            self._redact_error(e)  # it may list CAPA's SASL line
            raise
        self._note(f"authenticating as {credentials.user} with {name}")
        capa_read = False
        riders = ([] if not self.pipelining  # what rides with the login (see above)
                  else self._named_requests(lookup.numbers, uids=lookup.uids)
                  if lookup is not None else self._scan_requests() if scan
                  else [self._listing_request("UIDL")] if uids else [])
        ahead = [Command(verb, (str(n), *args)) for n in sorted(lookup.numbers)
                 for verb, args in (("TOP", ("0",)), ("DELE", ()))] \
            if riders and lookup is not None and lookup.delete else []
        riders += [_Request(command) for command in ahead]
        if name == "USER":
            capa_read = self._login_user(credentials, riders)
        elif name == "APOP":
            assert self.greeting is not None and self.greeting.timestamp is not None
            digest = auth.apop_digest(self.greeting.timestamp, credentials.password or "")
            try:
                self._auth_reply(self._call_auth(Command("APOP", (credentials.user, digest))))
            except AuthenticationError:
                # A timestamp in the greeting says the server implements APOP, not that this
                # account has an APOP secret (GNU mailutils greets with one and refuses APOP
                # without its APOP database). Chosen by "auto" over a clear connection the user
                # allowed, APOP falls back to USER/PASS, which RFC 1939 permits after a failure.
                if credentials.mechanism.upper() != "AUTO" \
                        or not auth.available("USER", self.capabilities, None):
                    raise
                self._note("APOP refused; trying USER/PASS")
                name = "USER"
                capa_read = self._login_user(credentials, riders)
        else:
            capa_read = self._login_sasl(auth.make_mechanism(name, credentials), riders)
        self.mechanism = name
        if not capa_read:
            # Some servers (Gmail) announce more once logged in.
            capa = Command("CAPA") if self.capabilities.known else None
            commands = [*([capa] if capa else []), *(r.command for r in riders)]
            if commands:
                self._settle()
                self._send(*commands)
            if capa:
                self._read_capa(capa)
        if riders and lookup is not None:
            self._prefetched_named = _Named(lookup.numbers, lookup.uids, [
                (request, self._reply(request.command))
                for request in riders[:len(riders) - len(ahead)]])
            self._ahead = ahead
        elif scan and riders:
            self._prefetched = self._read_scan(riders)
        elif riders:
            self._prefetched_uids = self._read_listing(riders[0])
        return name

    def _call_auth(self, command: Command) -> Reply:
        self._send(command)
        return self._reply(command)

    def _auth_reply(self, reply: Reply) -> None:
        if not reply.ok:
            raise server_error(reply, AuthenticationError, "login")

    def _login_user(self, credentials: Credentials, riders: builtins.list[_Request]) -> bool:
        """USER/PASS; when pipelining, CAPA (and ``riders``, whose replies the caller reads)
        rides along, saving round trips: True if so."""
        user = Command("USER", (credentials.user,))
        password = Command("PASS", (credentials.password or "",))
        if self.pipelining:
            capa = Command("CAPA")
            self._send(user, password, capa, *(r.command for r in riders))
            first, second = self._reply(user), self._reply(password)
            # Refused: say so now. Some servers hang up after a failed PASS, and waiting for
            # the CAPA behind it would report a lost connection instead of the refusal.
            self._auth_reply(first)
            self._auth_reply(second)
            try:
                first_after = self._reply(capa)
            except NetworkTimeoutError as e:
                # A server that announces PIPELINING but drops what arrived with the
                # credentials (a login process handing the connection on, its buffer lost).
                raise NetworkTimeoutError(
                    f"{e}; the server accepted the login but did not answer the commands sent "
                    "with it, although it announces PIPELINING", hint="no-pipelining") from e
            self._read_capa(capa, first_after)
            return True
        else:
            first = self._call_auth(user)
            if not first.ok:
                raise server_error(first, AuthenticationError, "login")
            second = self._call_auth(password)
        self._auth_reply(first)
        self._auth_reply(second)
        return False

    def _login_sasl(self, mechanism: auth.Mechanism, riders: builtins.list[_Request]) -> bool:
        """The SASL exchange. When pipelining, CAPA (and ``riders``, whose replies the caller
        reads) go out with the mechanism's last message instead of after the +OK: True if so.

        The rule relied on (docs/ARCHITECTURE.md, "Pipelining"): a line sent while no challenge
        is outstanding is a command, so commands may follow the client's last SASL message. If
        the server challenges all the same (an OAuth error), it takes the first of them as the
        answer; the -ERR that follows is reported as the login's failure, as it would be
        without pipelining. An answer the mechanism knows before its challenge comes
        (``Mechanism.next_answer``: SCRAM's empty line) goes out with the message before it,
        and the commands behind it.
        """
        capa = Command("CAPA") if self.capabilities.known else None
        after = [*([capa] if capa else []), *(r.command for r in riders)] \
            if self.pipelining else []
        followed = False
        answered: Command | None = None  # a command the server read as a SASL answer
        early: bytes | None = None  # an answer sent before its challenge came
        answered_ahead = False  # whether one was
        initial = mechanism.initial_response()
        command = None
        if initial is not None:
            try:
                command = Command("AUTH", (mechanism.name,
                                           base64.b64encode(initial).decode() or "="))
            except LocalProtocolError:  # too long: RFC 5034 says wait for an empty challenge
                command = None
        held_back = initial if command is None else None
        if command is None:
            command = Command("AUTH", (mechanism.name,))
        data = self._protocol.send(command)
        if self._trace is not None:
            self._trace("C", safe(command.redacted()))
        if held_back is None and initial is not None and mechanism.final and after:
            data += self._followers(after)
            followed = True
        self._write(data)
        mechanism.prepare()
        while True:
            try:
                event = self._next()
            except NetworkTimeoutError as e:
                if not answered_ahead:
                    raise
                # A server that drops what came before it asked (its buffer flushed at the
                # challenge) still waits for the empty line.
                raise NetworkTimeoutError(
                    f"{e}; the server did not take {mechanism.name}'s last message, sent with "
                    "the one before, although it announces PIPELINING",
                    hint="no-pipelining") from e
            if isinstance(event, Reply) and event.command is command:
                self._auth_reply(event)
                if early is not None:
                    # The server never sent the challenge the early answer was for: it now
                    # reads that line as a command, and the mechanism has no proof (SCRAM).
                    mechanism.finish()
                    raise RemoteProtocolError(
                        f"the server ended {mechanism.name} without its last challenge")
                if answered is not None:
                    raise RemoteProtocolError(
                        f"the server challenged after {mechanism.name}'s last message, took "
                        f"{answered.verb} as the answer and accepted the login")
                mechanism.finish()
                if followed and capa is not None:
                    self._read_capa(capa)
                return followed
            if not isinstance(event, Challenge):
                raise RemoteProtocolError(f"unexpected {event!r} during AUTH")
            if event.answered_by is not None:
                # Pipelined behind what should have been the last message: the server has
                # its answer already (an OAuth error ends in -ERR whatever the answer).
                answered = event.answered_by
                self._note(f"the server read {answered.verb} as the answer to its challenge")
                continue
            try:
                challenge = base64.b64decode(event.data, validate=True)
            except binascii.Error:
                if not event.answered_early:
                    self._write(self._protocol.send_auth_response("*"))
                raise RemoteProtocolError(
                    "the server sent a SASL challenge that is not base64") from None
            if event.answered_early:
                # Its answer is on its way already; the mechanism checks the challenge (SCRAM:
                # the server's signature) and raises if the login must not be kept.
                assert early is not None
                try:
                    if mechanism.respond(challenge) != early:
                        raise LocalProtocolError(f"{mechanism.name} answered differently "
                                                 "than it said it would")
                except Exception as e:
                    self._redact_error(e)
                    raise
                early = None
                continue
            if held_back is not None and not challenge:
                response, held_back = held_back, None
            else:
                try:
                    response = mechanism.respond(challenge)
                except Exception as e:
                    self._write(self._protocol.send_auth_response("*"))
                    self._redact_error(e)  # it may quote the challenge (SCRAM's e=)
                    raise
            line = base64.b64encode(response).decode()
            data = self._protocol.send_auth_response(line)
            if self._trace is not None:
                self._trace("C", "***" if line else "")
            if mechanism.next_answer is not None and after and not followed:
                early, answered_ahead = mechanism.next_answer, True
                line = base64.b64encode(early).decode()
                data += self._protocol.send_auth_response(line, early=True)
                if self._trace is not None:
                    self._trace("C", "***" if line else "")
                data += self._followers(after)
                followed = True
            if mechanism.final and after and not followed:
                data += self._followers(after)
                followed = True
            self._write(data)

    def _followers(self, commands: builtins.list[Command]) -> bytes:
        """``commands`` queued behind the AUTH whose last message is being sent."""
        self._protocol.auth_sent_last()
        if self._trace is not None:
            for command in commands:
                self._trace("C", safe(command.redacted()))
        return b"".join(self._protocol.send(c) for c in commands)

    # --- the POP3 commands -----------------------------------------------------------------------

    def capa(self) -> Capabilities:
        """RFC 2449 CAPA. A server without CAPA yields Capabilities(known=False)."""
        command = Command("CAPA")
        self._settle()
        self._send(command)
        return self._read_capa(command)

    def _read_capa(self, command: Command, reply: Reply | None = None) -> Capabilities:
        reply = self._reply(command) if reply is None else reply
        if not reply.ok:
            self.capabilities = Capabilities(known=False)
            return self.capabilities
        collector = _Collector(MAX_LISTING_BYTES, truncate=False, what="CAPA")
        self._data(command, collector)
        self.capabilities = Capabilities.parse(list(collector.lines()))
        return self.capabilities

    def stat(self) -> MailboxStat:
        reply = self._call(Command("STAT"))
        words = reply.text.split()
        if len(words) < 2:
            raise RemoteProtocolError(f"malformed STAT reply: {reply.text[:80]!r}")
        count = parse_int(words[0], "STAT count")
        if count > MAX_MESSAGE_NUMBER:
            raise RemoteProtocolError(
                f"server sent STAT count {count}, more messages than any mailbox holds (the "
                f"limit is {MAX_MESSAGE_NUMBER})")
        self._stat_count = count
        return MailboxStat(count, parse_int(words[1], "STAT size"))

    def _listed(self, listing: _Listing) -> SizeListing | UidListing:
        """A LIST or UIDL reply's listing, checked against the last STAT: a listing can only
        shrink after it (deletions), never grow (RSET forgets the count)."""
        result = listing.sink.finish()
        if self._stat_count is not None and len(result) > self._stat_count:
            raise RemoteProtocolError(
                f"server listed {len(result)} messages in its {result.what} reply, but its "
                f"STAT said {self._stat_count}")
        highest = highest_allowed(len(result), self._marked)
        if result.last > highest:
            raise RemoteProtocolError(
                f"server listed message {result.last} in a {result.what} reply of "
                f"{len(result)} message(s) after {self._marked} deletion(s) in this session: "
                f"messages are numbered from 1 to their count (at most {highest} allowed)")
        return result

    @staticmethod
    def _listing_request(verb: str) -> _Request:
        listing = SizeListing() if verb == "LIST" else UidListing()
        return _Request(Command(verb), ListingSink(listing, MAX_LISTING_BYTES))

    def list(self, messages: Iterable[int] | None = None) -> Sequence[MessageSize]:
        """Sizes of all messages (one LIST, kept compact) or of the given ones (pipelined
        LIST n)."""
        if messages is None:
            request = self._listing_request("LIST")
            assert isinstance(request.sink, ListingSink)
            reply = self._call(request.command, request.sink)
            sizes = self._listed(_Listing(reply, request.sink))
            assert isinstance(sizes, SizeListing)
            return sizes
        result = []
        for request, reply in self._batch(
                _Request(Command("LIST", (str(n),)), number=n) for n in messages):
            if not reply.ok:
                raise server_error(reply, NoSuchMessageError, f"LIST {request.number}")
            entry = self._size_entry(reply.text)
            if entry.number != request.number:
                raise RemoteProtocolError(f"asked LIST {request.number}, server answered for "
                                          f"message {entry.number}")
            result.append(entry)
        return result

    @staticmethod
    def _size_entry(line: str) -> MessageSize:
        return parse_size(line)

    def uidl(self, messages: Iterable[int] | None = None) -> Sequence[MessageUid]:
        """Unique ids of all messages (one UIDL, kept compact) or of the given ones (pipelined
        UIDL n)."""
        if messages is None:
            listing, self._prefetched_uids = self._prefetched_uids, None
            if listing is None:
                request = self._listing_request("UIDL")
                assert isinstance(request.sink, ListingSink)
                listing = _Listing(self._call(request.command, request.sink,
                                              error=CapabilityError), request.sink)
            elif not listing.reply.ok:
                raise server_error(listing.reply, CapabilityError)
            uids = self._listed(listing)
            assert isinstance(uids, UidListing)
            return uids
        result = []
        for request, reply in self._batch(
                _Request(Command("UIDL", (str(n),)), number=n) for n in messages):
            if not reply.ok:
                raise server_error(reply, NoSuchMessageError, f"UIDL {request.number}")
            number, uid = parse_pair(reply.text, "UIDL")
            entry = MessageUid(check_number(number, "UIDL"), uid)
            if entry.number != request.number:
                raise RemoteProtocolError(f"asked UIDL {request.number}, server answered for "
                                          f"message {entry.number}")
            result.append(entry)
        return result

    def scan(self) -> tuple[SizeListing, UidListing | None]:
        """LIST and UIDL together, in one round trip when pipelining (none if they came with
        the login); UIDs None without UIDL. Both kept compact (popctl/listing.py)."""
        scanned, self._prefetched = self._prefetched, None
        if scanned is None:
            self._settle()
            requests = self._scan_requests()
            if self.pipelining:
                self._send(*(r.command for r in requests))
            scanned = self._read_scan(requests, sent=self.pipelining)
        uidl, listing = scanned
        if not listing.reply.ok:
            raise server_error(listing.reply)
        sizes = self._listed(listing)
        assert isinstance(sizes, SizeListing)
        if not uidl.reply.ok:
            if "UIDL" in self.capabilities or uidl.reply.code is not None:
                # Announced, or a response code says why: a failure, not a missing command
                # (shown blank, the UIDs would read as "this server has none").
                raise server_error(uidl.reply)
            return sizes, None
        uids = self._listed(uidl)
        assert isinstance(uids, UidListing)
        return sizes, uids

    def lookup(self, numbers: Sequence[int], *, uids: bool = True
               ) -> tuple[Sequence[MessageSize], Sequence[MessageUid] | None]:
        """The sizes (LIST n) and UIDs (UIDL n, with ``uids``) of the messages a user named, in
        one pipelined batch with a STAT (none if it came with the login): a few lines where
        the whole listings of a large mailbox are megabytes. A message that is not there
        raises NoSuchMessageError, worded as selection.select words it; UIDs are None if the
        server answers no UIDL n.
        """
        numbers = tuple(numbers)
        named, self._prefetched_named = self._prefetched_named, None
        if named is None or (named.numbers, named.uids) != (numbers, uids):
            if not self.pipelining and len(numbers) > 1:
                # In lock-step every lookup is a round trip: two listings cost two.
                return self.scan() if uids else (self.list(), None)
            named = _Named(numbers, uids, builtins.list(self._batch(
                self._named_requests(numbers, uids=uids, stat=self.pipelining))))
        count = None
        sizes: builtins.list[MessageSize] = []
        found: builtins.list[MessageUid] = []
        for request, reply in named.replies:
            verb, n = request.command.verb, request.number
            if verb == "STAT":
                words = reply.text.split()
                if reply.ok and words and words[0].isdigit() and len(words[0]) <= 10:
                    count = int(words[0])
                continue
            if not reply.ok:
                if verb == "UIDL":
                    continue  # no UIDL here (the caller decides whether that matters)
                if reply.code is not None:  # [SYS/TEMP] and such: not a missing message
                    raise server_error(reply, NoSuchMessageError, f"LIST {n}")
                if count is None and not self._marked:  # not asked in lock-step: ask now
                    count = self.stat().count
                if count is not None and not self._marked and n > count:
                    raise NoSuchMessageError(f"message {n} does not exist ({_mailbox_of(count)})")
                raise NoSuchMessageError(f"message {n} does not exist or is deleted")
            if verb == "LIST":
                size = parse_size(reply.text)
                number = size.number
                sizes.append(size)
            else:
                number, uid = parse_pair(reply.text, "UIDL")
                found.append(MessageUid(check_number(number, "UIDL"), uid))
            if number != n:
                raise RemoteProtocolError(f"asked {verb} {n}, server answered for message "
                                          f"{number}")
        return sizes, found or None  # None: not asked, or no UIDL n answered

    @staticmethod
    def _named_requests(numbers: Iterable[int], *, uids: bool,
                        stat: bool = True) -> builtins.list[_Request]:
        # STAT words a missing message's error as a whole listing would (pipelined, it costs
        # no round trip; in lock-step it is asked only then); UIDL n before LIST n for the
        # reason given in _scan_requests.
        numbers = builtins.list(numbers)
        return [*([_Request(Command("STAT"))] if stat else []),
                *(_Request(Command("UIDL", (str(n),)), number=n) for n in numbers if uids),
                *(_Request(Command("LIST", (str(n),)), number=n) for n in numbers)]

    @classmethod
    def _scan_requests(cls) -> builtins.list[_Request]:
        # UIDL first: GNU mailutils adds an X-UIDL header to each message when it first
        # computes its UID, and its LIST before that counts the message without it; after it,
        # LIST gives the octets RETR will send, in this session and the next.
        return [cls._listing_request("UIDL"), cls._listing_request("LIST")]

    def _read_scan(self, requests: builtins.list[_Request], *, sent: bool = True) -> _Scan:
        """The replies to _scan_requests() (sent already, or one at a time if not ``sent``)."""
        got = []
        for request in requests:
            if not sent:
                self._send(request.command)
            got.append(self._read_listing(request))
        return got[0], got[1]

    def _read_listing(self, request: _Request) -> _Listing:
        """The reply to a listing request already sent, and its data if +OK."""
        reply = self._reply(request.command)
        assert isinstance(request.sink, ListingSink)
        if reply.ok:
            self._data(request.command, request.sink)
        return _Listing(reply, request.sink)

    def top(self, message: int, lines: int, sink: Sink) -> int:
        """Headers and the first ``lines`` body lines of one message, streamed to ``sink``."""
        counter = _CountingSink(sink)
        try:
            self._call(Command("TOP", (str(message), str(lines))), counter,
                       error=NoSuchMessageError, what=f"TOP {message}")
        except NoSuchMessageError as e:
            if e.code is None and self.lacks("TOP"):
                raise CapabilityError(NO_TOP, command="TOP", hint="use-retr",
                                      hint_args={"number": str(message)}) from None
            raise
        return counter.octets

    def headers(self, messages: Iterable[int], lines: int = 0, *,
                delete: Iterable[int] = ()) -> Iterator[MessageHeaders]:
        """Pipelined TOP n ``lines`` over many messages, each result as soon as it is complete.

        The messages in ``delete`` are also marked deleted, in the same window: DELE n right
        after TOP n, or first for those not read here (their headers were cached). That reads
        what is deleted in the round trips of the deletion. A refused DELE raises
        NoSuchMessageError; as always, nothing is committed without QUIT.
        """
        doomed = set(delete)
        numbers = builtins.list(messages) if doomed else messages

        # A header block past MAX_HEADER_BYTES is cut; a reply that never ends is not read for
        # ever (a server ignoring TOP's line count sends whole messages, so the bound is the
        # generous one of listings). One collector for every TOP: see _Collector.take.
        block = _Collector(MAX_HEADER_BYTES, truncate=True, what="TOP",
                           hard_limit=MAX_LISTING_BYTES)

        def requests() -> Iterator[_Request]:
            if doomed:
                reading = set(numbers)
                for n in sorted(doomed - reading):
                    yield _Request(Command("DELE", (str(n),)), number=n)
            for n in numbers:
                yield _new_request((Command.top(n, lines), block, n))
                if n in doomed:
                    yield _Request(Command("DELE", (str(n),)), number=n)

        for request, reply in self._batch(requests()):
            if request.sink is None:  # a DELE
                if not reply.ok:
                    raise server_error(reply, NoSuchMessageError, f"DELE {request.number}")
                continue
            if not reply.ok:
                if reply.code is None and self.lacks("TOP"):
                    raise CapabilityError(NO_TOP, command="TOP")
                raise server_error(reply, NoSuchMessageError, f"TOP {request.number}")
            yield _new_headers((request.number, *block.take()))

    def retr(self, message: int, sink: Sink) -> int:
        """The whole message, streamed to ``sink`` in constant memory; returns the octets."""
        counter = _CountingSink(sink)
        self._call(Command("RETR", (str(message),)), counter, error=NoSuchMessageError,
                   what=f"RETR {message}")
        return counter.octets

    def retr_many(self, messages: Iterable[int], open_sink: Callable[[int], Sink], *,
                  finish: Callable[[int, Sink], None] | None = None,
                  delete: bool = False,
                  sizes: Mapping[int, int] | None = None) -> Iterator[Retrieved]:
        """Pipelined RETR. For each message: ``open_sink(n)``, the data, ``finish(n, sink)``.

        With ``delete``, DELE n is sent only after ``finish`` returned (it must make the copy
        durable); if ``finish`` raises, nothing more is sent and the error propagates. A
        message that arrived with fewer octets than ``sizes`` (its LIST size) says is
        ``short``: it is never deleted, as a transfer cut short is what that looks like. More
        octets are normal (mpopd lists LF sizes, mailutils adds a header).
        """
        counters: dict[int, _CountingSink] = {}

        def requests() -> Iterator[_Request]:
            for n in messages:
                counters[n] = _CountingSink(lambda n=n: open_sink(n))  # type: ignore[misc]
                yield _Request(Command("RETR", (str(n),)), counters[n], n)

        for request, reply in self._batch(requests()):
            n = request.number
            if request.command.verb == "DELE":
                if not reply.ok:
                    raise server_error(reply, NoSuchMessageError, f"DELE {n}")
                yield Retrieved(n, counters.pop(n).octets, deleted=True)
                continue
            if not reply.ok:
                raise server_error(reply, NoSuchMessageError, f"RETR {n}")
            counter = counters[n]
            if finish is not None:
                finish(n, counter.sink)
            short = sizes is not None and counter.octets < sizes.get(n, 0)
            if delete and not short:
                self._pushed.append(_Request(Command("DELE", (str(n),)), number=n))
            else:
                yield Retrieved(n, counters.pop(n).octets, short=short)

    def dele(self, messages: int | Iterable[int]) -> builtins.list[int]:
        """Mark messages deleted (pipelined). Committed only by QUIT; all-or-nothing on error."""
        numbers = [messages] if isinstance(messages, int) else list(messages)
        failure: ServerError | None = None
        marked = []
        for request, reply in self._batch(
                _Request(Command("DELE", (str(n),)), number=n) for n in numbers):
            if reply.ok:
                marked.append(request.number)
            elif failure is None:
                failure = server_error(reply, NoSuchMessageError, f"DELE {request.number}")
        if failure is not None:
            raise failure
        return marked

    def rset(self) -> None:
        """Unmark every message marked deleted in this session."""
        self._call(Command("RSET"))

    def noop(self) -> None:
        self._call(Command("NOOP"))

    def last(self) -> int:
        """RFC 1460 LAST: the highest message number accessed (few servers still have it)."""
        reply = self._call(Command("LAST"), error=CapabilityError)
        words = reply.text.split()
        return parse_int(words[0] if words else "", "LAST")

    def raw(self, line: str, sink: Sink | None = None) -> Reply:
        """Send one command line as typed (the shell's escape hatch); -ERR is returned, not
        raised. Multi-line replies of known commands go to ``sink``."""
        line = line.strip()
        if any(c in line for c in "\r\n\0"):
            # split() below would quietly turn a CR into an argument separator.
            raise LocalProtocolError("CR, LF or NUL inside a command line; nothing was sent")
        verb, _, rest = line.partition(" ")
        command = Command(verb, tuple(rest.split()) if verb.upper() not in ("PASS", "USER")
                          else (rest,) if rest else ())
        self._settle()
        self._send(command)
        reply = self._reply(command)
        if reply.ok and command.multiline:
            self._data(command, sink if sink is not None else _Collector(
                0, truncate=True, what=command.verb))
        return reply._replace(text=self._redact(reply.text))  # text to show, not to parse

    def quit(self) -> None:
        """QUIT: the server commits this session's deletions and closes.

        With no deletion marked there is nothing for the reply to confirm: QUIT is sent and the
        connection closed without waiting for it (a round trip saved on every read-only command;
        the server has the QUIT before the FIN and ends the session as usual).
        """
        if self._closed:
            return
        try:
            self._settle()
            command = Command("QUIT")
            try:
                self._send(command)
                if not self._marked:
                    self._note("QUIT sent; no deletions pending, so its reply is not awaited")
                    return
                reply = self._reply(command)
            except TransportError as e:
                if not self._marked:
                    # Nothing to commit, so nothing depends on the answer: the work is done.
                    self._note(f"no answer to QUIT ({e}); no deletions were pending")
                    return
                raise type(e)(f"{e}; the {self._marked} deletion(s) of this session may or "
                              "may not have been made (see what is left with list)",
                              hint=e.hint, hint_args=e.hint_args) from e
            if not reply.ok:
                raise server_error(reply, then=f"; the {self._marked} deletion(s) of this "
                                   "session may not have been made (see what is left with list)")
        finally:
            self._closed = True
            self._transport.close()


class _CountingSink:
    """Counts what passes to a sink, which is opened only when first needed."""

    def __init__(self, sink: Sink | Callable[[], Sink]) -> None:
        self._sink = sink if not callable(sink) else None
        self._open = sink if callable(sink) else None
        self.octets = 0

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            assert self._open is not None
            self._sink = self._open()
        return self._sink

    def write(self, data: bytes) -> None:
        self.octets += len(data)
        self.sink.write(data)


# Re-exported for callers that only import the session module.
__all__ = ["CLOSED", "MAX_IN_FLIGHT", "Lookup", "Prefetch", "Session", "Sink", "TraceHook",
           "default_session_timeout", "server_error"]

"""Authentication mechanisms (RFC 1939 USER/APOP, RFC 5034 SASL) and the choice among them.

Each SASL mechanism is a small object without I/O: an optional initial response, then one answer
per server challenge. The session drives it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from os import urandom

from popctl.errors import (
    AuthenticationError,
    CapabilityError,
    InsecureAuthError,
    RemoteProtocolError,
    UsageError,
)
from popctl.models import Capabilities, Credentials

# hashlib, hmac, secrets and stringprep are imported by the mechanisms that use them: USER/PASS,
# PLAIN and the tokens, which most sessions use, need none of them (~7 ms of start-up).

# Preference when the connection is protected by TLS: SCRAM proves both sides know the password
# without sending it; then the plain forms (safe inside TLS). The MD5 challenge-response
# mechanisms come last: they need the server to keep the password in clear and add nothing
# under TLS.
TLS_PREFERENCE = ("SCRAM-SHA-256", "PLAIN", "LOGIN", "USER", "CRAM-MD5", "APOP")
# Without TLS (only when the user allowed it): never let the password itself cross the wire
# if the server offers anything better.
CLEAR_PREFERENCE = ("SCRAM-SHA-256", "CRAM-MD5", "APOP", "PLAIN", "LOGIN", "USER")
OAUTH_PREFERENCE = ("OAUTHBEARER", "XOAUTH2")
OAUTH_MECHANISMS = frozenset(OAUTH_PREFERENCE)
# The most PBKDF2 rounds a server may ask of SCRAM: ~0.25 s here at 1,000,000. More is a
# server making its clients burn CPU, not a hash anyone configures (RFC 7677 suggests 4096).
MAX_SCRAM_ITERATIONS = 1_000_000
_SCRAM_ITERATIONS = re.compile(r"[1-9][0-9]{0,6}")  # ASCII digits only: int() takes "٣" too


class Mechanism:
    """A SASL client mechanism.

    ``final`` is True once the message it last produced is the last it sends when the login
    succeeds (the server then answers +OK, or -ERR): commands may be pipelined behind it.
    ``next_answer`` is, when known before it arrives, the answer to the server's next
    challenge whatever it says: SCRAM's empty line after server-final (the check of the
    server's signature does not change what is sent, only whether the login is kept).
    """

    name: str = ""
    final: bool = False
    next_answer: bytes | None = None

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        raise AuthenticationError(f"unexpected challenge from the server during {self.name}",
                                  command="AUTH")

    def finish(self) -> None:
        """Called on +OK; raises if the server never proved itself (SCRAM)."""

    def prepare(self) -> None:
        """Work that can wait for the server's first challenge, done while it is on its way."""


class Plain(Mechanism):
    name = "PLAIN"

    def __init__(self, user: str, password: str) -> None:
        self._message = b"\0" + _utf8(user, "user name") + b"\0" + _utf8(password, "password")

    def initial_response(self) -> bytes:
        self.final = True
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        self.final = True
        return self._message  # the server asked with an empty challenge instead


class Login(Mechanism):
    name = "LOGIN"

    def __init__(self, user: str, password: str) -> None:
        self._answers = [_utf8(user, "user name"), _utf8(password, "password")]

    def respond(self, challenge: bytes) -> bytes:
        if not self._answers:
            return super().respond(challenge)
        answer = self._answers.pop(0)
        self.final = not self._answers
        return answer


class CramMD5(Mechanism):
    name = "CRAM-MD5"

    def __init__(self, user: str, password: str) -> None:
        self._user, self._password = user, password

    def respond(self, challenge: bytes) -> bytes:
        import hashlib
        import hmac

        digest = hmac.new(_utf8(self._password, "password"), challenge, hashlib.md5).hexdigest()
        self.final = True
        return _utf8(f"{self._user} {digest}", "user name")


class XOAuth2(Mechanism):
    name = "XOAUTH2"

    def __init__(self, user: str, token: str) -> None:
        self._message = _utf8(f"user={user}\x01auth=Bearer {token}\x01\x01", "token")

    def initial_response(self) -> bytes:
        self.final = True
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        # An error is reported as a challenge holding JSON; an empty answer ends the exchange.
        self.final = not challenge
        return b"" if challenge else self._message


class OAuthBearer(Mechanism):
    """RFC 7628."""

    name = "OAUTHBEARER"

    def __init__(self, user: str, token: str) -> None:
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        self._message = _utf8(f"n,a={authzid},\x01auth=Bearer {token}\x01\x01", "token")

    def initial_response(self) -> bytes:
        self.final = True
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        # RFC 7628 section 3.2.3: an error is a challenge, answered with %x01 to end it.
        self.final = not challenge
        return b"\x01" if challenge else self._message


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep, as SCRAM (RFC 5802) requires for user names and passwords."""
    import stringprep
    import unicodedata

    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in text
        if not stringprep.in_table_b1(c)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    for c in normal:
        if (stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c)
                or stringprep.in_table_c3(c) or stringprep.in_table_c4(c)
                or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
                or stringprep.in_table_c7(c) or stringprep.in_table_c8(c)
                or stringprep.in_table_c9(c) or stringprep.in_table_a1(c)):
            raise UsageError("the user name or password contains a character SASLprep forbids")
    return normal


class ScramSHA256(Mechanism):
    """RFC 5802 / RFC 7677, without channel binding."""

    name = "SCRAM-SHA-256"

    def __init__(self, user: str, password: str, nonce: str | None = None) -> None:
        self._user = saslprep(user).replace("=", "=3D").replace(",", "=2C")
        self._password = saslprep(password).encode()
        # os.urandom, what secrets.token_bytes calls, without importing secrets (and random
        # and hmac with it) before the AUTH can go out.
        self._nonce = nonce or base64.b64encode(urandom(24)).decode()
        self._client_first_bare = f"n={self._user},r={self._nonce}"
        self._server_signature: bytes | None = None
        self._verified = False

    def initial_response(self) -> bytes:
        return b"n,," + self._client_first_bare.encode()

    def prepare(self) -> None:
        import hashlib  # noqa: F401  (OpenSSL's start-up, ~3 ms, paid during the round trip)
        import hmac  # noqa: F401

    def respond(self, challenge: bytes) -> bytes:
        if self._server_signature is None:
            client_final = self._client_final(challenge)
            self.next_answer = b""  # server-final is data with success (RFC 4422 3.6)
            return client_final
        if not self._verified:
            self.next_answer = None
            self._verify(challenge)
            self.final = True  # the empty line answering server-final
            return b""
        return super().respond(challenge)

    def _client_final(self, server_first: bytes) -> bytes:
        import hashlib
        import hmac

        fields = _scram_fields(server_first)
        nonce, salt, iterations = fields.get("r", ""), fields.get("s", ""), fields.get("i", "")
        if not nonce.startswith(self._nonce) or not salt or not iterations:
            raise RemoteProtocolError("malformed SCRAM challenge from the server (RFC 5802 "
                                      "needs r=, s= and i=, and our nonce)")
        try:
            salt_bytes = base64.b64decode(salt, validate=True)
        except binascii.Error:
            salt_bytes = b""
        if not salt_bytes:
            raise RemoteProtocolError("malformed SCRAM challenge from the server: the salt is "
                                      "not base64")
        if not _SCRAM_ITERATIONS.fullmatch(iterations):
            raise RemoteProtocolError("malformed SCRAM challenge from the server: the iteration "
                                      "count is not a whole number from 1 to "
                                      f"{MAX_SCRAM_ITERATIONS:,}")
        rounds = int(iterations)
        if rounds > MAX_SCRAM_ITERATIONS:
            raise RemoteProtocolError(f"the server asks for {rounds:,} SCRAM iterations, more "
                                      f"than popctl's limit of {MAX_SCRAM_ITERATIONS:,}")
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt_bytes, rounds)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = ",".join((self._client_first_bare, server_first.decode(), without_proof))
        signature = hmac.digest(stored_key, auth_message.encode(), "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message.encode(), "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def _verify(self, server_final: bytes) -> None:
        import hmac

        fields = _scram_fields(server_final)
        if "e" in fields:
            raise AuthenticationError(f"SCRAM failed: {fields['e']}", command="AUTH")
        expected = base64.b64encode(self._server_signature or b"").decode()
        if not hmac.compare_digest(fields.get("v", ""), expected):
            raise AuthenticationError(
                "the server's SCRAM signature is wrong: it does not know the password "
                "(possible impostor)", command="AUTH")
        self._verified = True

    def finish(self) -> None:
        if not self._verified:
            raise AuthenticationError(
                "the server accepted SCRAM without proving it knows the password", command="AUTH")


def _scram_fields(message: bytes) -> dict[str, str]:
    try:
        text = message.decode()
    except UnicodeDecodeError:
        text = ""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def apop_digest(timestamp: str, password: str) -> str:
    import hashlib

    return hashlib.md5(_utf8(timestamp + password, "password")).hexdigest()


_SASL: dict[str, Callable[[str, str], Mechanism]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "CRAM-MD5": CramMD5,
    "SCRAM-SHA-256": ScramSHA256,
    "XOAUTH2": XOAuth2,
    "OAUTHBEARER": OAuthBearer,
}
SUPPORTED = frozenset({*_SASL, "USER", "APOP"})


def make_mechanism(name: str, credentials: Credentials) -> Mechanism:
    secret = credentials.oauth2_token if name in OAUTH_MECHANISMS else credentials.password
    if secret is None:
        raise UsageError(f"{name} needs {'a token' if name in OAUTH_MECHANISMS else 'a password'}")
    return _SASL[name](credentials.user, secret)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8; never a UnicodeEncodeError, whose message quotes the character and
    its position in the secret (choose_mechanism refuses such secrets first; this guards the
    mechanisms used directly)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"the {what} is not UTF-8 text; no credentials were sent") from None


def _is_ascii(text: str | None) -> bool:
    return text is None or text.isascii()


def available(name: str, caps: Capabilities, apop_timestamp: str | None) -> bool:
    """Whether the server offers ``name``; without CAPA, only USER and a greeting's APOP."""
    if name == "USER":
        return "USER" in caps or not caps.known
    if name == "APOP":
        return apop_timestamp is not None
    return name in caps.sasl


def refuse_plaintext(credentials: Credentials, *, encrypted: bool) -> None:
    """Raise unless the credentials may cross this connection: it is encrypted, or the user
    allowed plaintext. Checked before connecting to a server without TLS, and again at login."""
    if not encrypted and not credentials.allow_plaintext:
        raise InsecureAuthError("refusing to send credentials over a connection without TLS",
                                hint="plaintext")


def choose_mechanism(credentials: Credentials, caps: Capabilities, *, encrypted: bool,
                     apop_timestamp: str | None) -> str:
    """The mechanism to use, or an error saying why none is acceptable."""
    for what, value in (("user name", credentials.user), ("password", credentials.password),
                        ("token", credentials.oauth2_token)):
        # Command() refuses these in USER/PASS, but base64 would carry them into SASL (a NUL
        # splits PLAIN's fields): refuse them for every mechanism, before anything is sent.
        if value is not None and any(c in value for c in "\r\n\0"):
            raise UsageError(f"the {what} contains a CR, LF or NUL character; "
                             "no credentials were sent")
        if value is not None and not _encodable(value):
            # Bytes that are not UTF-8 (POPCTL_PASSWORD=$'\xff', a Latin-1 terminal) reach us as
            # lone surrogates, which no mechanism can send. Neither the byte nor its position
            # is named: either would tell a reader part of the secret.
            raise UsageError(f"the {what} is not UTF-8 text (it holds a byte that is not part "
                             "of a UTF-8 character); no credentials were sent")
    refuse_plaintext(credentials, encrypted=encrypted)
    wanted = credentials.mechanism.upper()
    if wanted != "AUTO":
        if wanted not in SUPPORTED:
            raise UsageError(f"unknown authentication mechanism {credentials.mechanism!r}; "
                             f"choose from: {', '.join(sorted(SUPPORTED))}")
        if wanted == "APOP" and apop_timestamp is None:
            # APOP is offered by the greeting, not by CAPA's SASL line: say what was missing.
            raise CapabilityError("the server does not offer APOP (its greeting has no "
                                  "timestamp <...@...>)")
        if not available(wanted, caps, apop_timestamp) and (wanted != "USER"):
            offered = ", ".join(caps.sasl) or "none"
            raise CapabilityError(f"the server does not offer {wanted} (SASL: {offered})")
        _check_utf8(wanted, credentials, caps)
        return wanted
    if credentials.oauth2_token is not None:
        for name in OAUTH_PREFERENCE:
            if name in caps.sasl:
                return name
        raise CapabilityError("the server offers neither OAUTHBEARER nor XOAUTH2 for the token")
    if credentials.password is None:
        raise UsageError("no password to authenticate with")
    for name in TLS_PREFERENCE if encrypted else CLEAR_PREFERENCE:
        if available(name, caps, apop_timestamp):
            try:
                _check_utf8(name, credentials, caps)
            except UsageError:
                continue
            return name
    raise CapabilityError("the server offers no authentication mechanism popctl supports "
                          f"(SASL: {', '.join(caps.sasl) or 'none'})")


def _check_utf8(name: str, credentials: Credentials, caps: Capabilities) -> None:
    """RFC 6856: USER/PASS and APOP carry non-ASCII only if CAPA says "UTF8 USER"."""
    if name not in ("USER", "APOP"):
        return
    if _is_ascii(credentials.user) and _is_ascii(credentials.password):
        return
    if "USER" not in tuple(a.upper() for a in caps.args("UTF8")):
        raise UsageError(f"non-ASCII user name or password, but the server does not announce "
                         f"UTF8 USER, so {name} cannot carry it; use a SASL mechanism")

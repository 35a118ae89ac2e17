"""popctl's bundled sandbox: a small, strict POP3 server over an in-memory sample mailbox.

It speaks RFC 1939 (plus APOP and the obsolete LAST), RFC 2449 CAPA and response codes, RFC 2595
STLS and RFC 5034 SASL PLAIN, so a new user can try every popctl command with no setup; deletions
only ever remove messages from this process's memory.

``pop3`` is the conversation without sockets, ``maildrop`` the shared mailbox state, ``server``
the sockets and ``SandboxServer``, ``tls`` its certificate, ``mailbox`` the sample messages.
"""

from popctl.sandbox.command import main
from popctl.sandbox.mailbox import sample_mailbox
from popctl.sandbox.server import SandboxServer

__all__ = ["SandboxServer", "main", "sample_mailbox"]

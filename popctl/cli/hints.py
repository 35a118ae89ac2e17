"""What the user can do about an error, in the command line's words: the one table of option
names the layers below refer to by key (``PopctlError.hint``)."""

from __future__ import annotations

# Each text follows the error's message as it is, its separator included.
HINTS: dict[str, str] = {
    "plaintext": "; use --tls implicit or --tls starttls, or allow it explicitly with "
                 "--allow-plaintext",
    "no-stls": ". Use --tls implicit, or --tls none if you really mean it",
    "no-pipelining": ": retry with --no-pipelining",
    "session-timeout": " (session timeout; raise it with --session-timeout)",
    "output-replaces": ", and --output replaces the file; redirect standard output instead",
    "new-needs-uidl": ": --new cannot be used with this server",
    "renumbered": ". To fetch them all again (copies of mail already stored): popctl seen "
                  "forget --all with the same store option, then retr --new again",
}


def describe(error: BaseException) -> str:
    """An error as people read it: its message, and the hint it names."""
    hint = getattr(error, "hint", None)
    return f"{error}{HINTS[hint]}" if hint else str(error)

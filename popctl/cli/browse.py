"""``popctl browse``: the full-screen view of the mailbox (the optional Textual extra)."""

from __future__ import annotations

from popctl.app.context import RunContext
from popctl.cli.group import cli
from popctl.cli.options import common_options, pass_run


@cli.command()
@common_options
@pass_run
def browse(run: RunContext) -> None:
    """Full-screen mailbox view: look, mark, delete.

    The mailbox in a full-screen terminal view, on one POP3 session: a table of every message
    (From, Subject, Date, size, UID) filled as the headers arrive, filtered as you type
    (from:REGEX subject:REGEX >SIZE <SIZE older:AGE newer:AGE WORD). Look at a message's
    headers or first lines, save it, mark messages and commit (DELE, then QUIT) after a
    confirmation; nothing is deleted before that. Press ? for the keys. Needs the Textual
    extra: pip install 'popctl[tui]'.

    \b
    Examples:
      popctl --sandbox browse
      popctl browse --account work
    """
    from popctl import tui

    tui.browse(run)

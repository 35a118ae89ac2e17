"""``popctl browse``: the mailbox in a full-screen terminal view (Textual), on one session.

Textual is an optional extra (``pip install 'popctl[tui]'``): only this package imports it,
and only when ``browse`` runs, so no other command's start-up changes. ``bridge`` (the session
on a thread of its own) and ``filters`` (the filter line) need no Textual; ``app`` and
``widgets`` are the interface.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from popctl.errors import PopctlError, UsageError

if TYPE_CHECKING:
    from popctl.app.context import RunContext

INSTALL = "pip install 'popctl[tui]'"


class MissingExtraError(PopctlError):
    """The optional Textual extra is not installed (exit status 1)."""


def browse(context: RunContext) -> None:
    """Run the browser on the terminal until the user leaves. The secret is looked up first,
    while the terminal can still ask for it; the first login's failure is the command's."""
    try:
        from popctl.tui.app import BrowseApp
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("textual", "rich"):
            raise
        raise MissingExtraError(f"popctl browse needs the Textual extra: {INSTALL}") from None
    if not (context.ui.interactive() and sys.stdout.isatty()):
        raise UsageError("popctl browse needs a terminal; in scripts use list, top and dele")
    from popctl.app.targets import find_secret, target_of
    from popctl.tui.bridge import Browser

    target = target_of(context)
    target = target._replace(credentials=find_secret(target, context.ui)[0])
    browser = Browser(context, target)
    ending = BrowseApp(browser).run()
    if ending is None:  # Textual ended by itself (its own Ctrl+Q): leave as the user would
        browser.abandon()
        return
    if ending.error is not None:
        raise ending.error
    if ending.uncommitted:
        context.ui.note(f"nothing deleted: {ending.uncommitted} marked message(s) were not "
                        "committed")

"""The browser's dialogs: help, the commit confirmation, the file to save to, the account to
switch to. Server text reaches them already made safe and as ``rich.text.Text`` (never markup:
a Subject with ``[bold]`` in it is shown as typed)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static

from popctl.tui.filters import FILTER_HELP

KEYS = (
    ("/", "filter: " + FILTER_HELP),
    ("enter, h", "headers of the message (TOP n 0)"),
    ("l", "its first lines (TOP n 20)"),
    ("w", "write (save) the message to a file (RETR)"),
    ("space, d", "mark / unmark for deletion"),
    ("D", "mark every message the filter shows"),
    ("u", "undo all marks (RSET)"),
    ("c", "commit: confirm, then DELE the marked messages and QUIT; reconnects"),
    ("1-6", "sort by #, size, From, Subject, Date, UID (again: reverse)"),
    ("r", "refresh (a new session: new mail shows)"),
    ("a", "switch account (from the configuration file)"),
    ("t", "show / hide the POP3 dialogue (credentials redacted)"),
    ("escape", "close the pane or dialog; back to the table"),
    ("q, ctrl+c", "leave; with marks not committed, nothing is deleted"),
)


def help_text() -> Text:
    text = Text("popctl browse: keys\n\n", style="bold")
    for keys, what in KEYS:
        text.append(f"{keys:>10}  ", style="bold")
        text.append(f"{what}\n")
    text.append("\nNothing is deleted until you commit; q with marks asks twice.")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 78; max-height: 22; border: round $accent;
                                  background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_text())

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConfirmCommit(ModalScreen[bool]):
    """The messages that will go, and y / n."""

    BINDINGS = [Binding("y", "answer(True)", "delete them"),
                Binding("n,escape", "answer(False)", "keep them")]
    DEFAULT_CSS = """
    ConfirmCommit { align: center middle; }
    ConfirmCommit > Vertical { width: 78; max-height: 20; height: auto; border: round $error;
                               background: $surface; }
    ConfirmCommit VerticalScroll { height: auto; max-height: 14; }
    """

    def __init__(self, lines: Sequence[Text], total: str) -> None:
        super().__init__()
        self._lines, self._total = lines, total

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Delete these {len(self._lines)} message(s), {self._total}, "
                              "from the server?", style="bold"))
            with VerticalScroll():
                yield Static(Text("\n").join(self._lines))
            yield Static(Text("y: delete them now (DELE, then QUIT)   n: keep them"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskPath(ModalScreen[str | None]):
    """Where to save a message."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    AskPath { align: center middle; }
    AskPath > Vertical { width: 70; height: auto; border: round $accent; background: $surface; }
    """

    def __init__(self, default: str) -> None:
        super().__init__()
        self._default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Save the message to (enter: save, escape: cancel):"))
            yield Input(value=self._default, id="path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickAccount(ModalScreen[str | None]):
    """One of the configuration file's accounts."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    PickAccount { align: center middle; }
    PickAccount > Vertical { width: 50; height: auto; max-height: 20; border: round $accent;
                             background: $surface; }
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self._names = list(names)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Switch to account (enter; escape: cancel):"))
            yield OptionList(*[Text(name) for name in self._names], id="accounts")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._names[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)

"""The Click classes popctl's commands are made of.

A command's ``--help`` describes its own options and only names the shared ones (connection,
output, reporting), which ``popctl --help`` describes once: they were ~45 lines repeated in every
command's help. A usage error raised while parsing knows the command it belongs to, so that its
one line (``cli/errors.usage_error``) can point to that command's help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


class SharedOption(click.Option):
    """An option every command accepts, before or after its name: described under
    ``popctl --help``, named in one line under each command's."""


def _format_options(command: click.Command, ctx: click.Context,
                    formatter: click.HelpFormatter) -> None:
    own: list[tuple[str, str]] = []
    shared: list[str] = []
    for param in command.get_params(ctx):
        if isinstance(param, SharedOption) and ctx.parent is not None:
            if not param.hidden:
                shared.append(max(param.opts, key=len))
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            own.append(record)
    if own:
        with formatter.section("Options"):
            formatter.write_dl(own)
    if shared:
        import textwrap

        text = (f"Accepted here too, and described under {ctx.find_root().command_path} --help: "
                f"{', '.join(shared)}.")
        with formatter.section("Global options"):
            indent = " " * formatter.current_indent
            for line in textwrap.wrap(text, max(formatter.width - len(indent), 20),
                                      break_on_hyphens=False):  # never --session-|timeout
                formatter.write(f"{indent}{line}\n")


def _attach(error: click.UsageError, ctx: click.Context) -> None:
    """Click's parser raises some errors (an option missing its value) without the context."""
    if error.ctx is None:
        error.ctx = ctx


def _parsed(parse: Callable[[click.Context, list[str]], list[str]], ctx: click.Context,
            args: list[str]) -> list[str]:
    """A command's arguments parsed, a usage error given the command it is about."""
    try:
        return parse(ctx, args)
    except click.UsageError as e:
        _attach(e, ctx)
        raise


class PopctlCommand(click.Command):
    """A command whose help names the shared options instead of describing them again."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_options(self, ctx, formatter)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _parsed(super().parse_args, ctx, args)


class PopctlSubgroup(click.Group):
    """A group of commands (``account``, ``password``, ``sandbox``) made of PopctlCommand."""

    command_class = PopctlCommand

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _parsed(super().parse_args, ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            _suggest(e, args[0] if args else "", self.list_commands(ctx))
            raise


def _suggest(error: click.UsageError, name: str, commands: list[str]) -> None:
    """``popctl lsit``: "Did you mean 'list'?", as Click says of an option. Click (8.4 and
    later) suggests only among the commands imported, and popctl's are imported when named."""
    import difflib

    if getattr(error, "possibilities", None) or name.startswith("-"):
        return  # Click suggested already; or an option, which Click reports itself
    close = sorted(difflib.get_close_matches(name, commands))
    if len(close) == 1:
        error.message = f"{error.message.rstrip('.')}. Did you mean {close[0]!r}?"
    elif close:
        error.message = (f"{error.message.rstrip('.')}. (Did you mean one of: "
                         f"{', '.join(map(repr, close))}?)")


def shared_option(*names: str, **attrs: Any) -> Any:
    """``click.option`` for a SharedOption."""
    return click.option(*names, cls=SharedOption, **attrs)

"""``popctl --man``: the manual page, however popctl was installed.

The page is one file, ``man/popctl.1``; the package holds a link to it (``popctl/man/popctl.1``),
which a wheel ships as package data. An editable install (``pip install -e``) drops the
``share/man/man1`` copy that ``man popctl`` finds, but the package's link still reaches the
checkout, so ``popctl --man`` works after either install.
"""

from __future__ import annotations

import os
import sys

import click

from popctl.errors import ExitCode


def page() -> str:
    """Where the page is: in the package (a file once installed, a link in a checkout)."""
    import popctl

    return os.path.join(os.path.dirname(os.path.abspath(popctl.__file__)), "man", "popctl.1")


def show(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """On a terminal, the page through ``man -l``; otherwise (or without man) its roff source,
    for ``popctl --man | man -l -`` or a file."""
    if not value or ctx.resilient_parsing:
        return
    path = page()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        click.echo(f"Error: the manual page is not installed with this popctl ({path}: "
                   f"{e.strerror or e}); reinstall popctl, or read man/popctl.1 in its source",
                   err=True)
        ctx.exit(ExitCode.FAILURE)
    if sys.stdout.isatty():
        import shutil

        man = shutil.which("man")
        if man is not None:
            import subprocess

            ctx.exit(ExitCode.OK if subprocess.call([man, "-l", path]) == 0 else ExitCode.FAILURE)
    click.echo(text, nl=False)
    ctx.exit(ExitCode.OK)

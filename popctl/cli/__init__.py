"""The command line: a package of small Click modules over popctl.app.

``group`` holds the ``popctl`` group and the way out of the process, ``commands`` the Click
classes of its commands (help that names the shared options once), ``options`` the shared
options and the typed run context handed to commands, ``errors`` the one place where errors
become exit codes, ``console`` the UI the application talks through; ``mailbox``, ``shell``,
``accounts``, ``sandbox``, ``seen`` and ``browse`` hold the commands, each imported when its
command is named (``group.COMMAND_MODULES``). The entry point is ``popctl.cli:main``.
"""

from popctl.cli.group import cli, main

__all__ = ["cli", "main"]

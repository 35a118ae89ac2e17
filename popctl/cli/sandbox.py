"""``popctl sandbox serve``: the bundled sample POP3 server in the foreground."""

from __future__ import annotations

import click

from popctl.cli.group import cli
from popctl.cli.options import refuse_unused


@cli.group()
def sandbox() -> None:
    """popctl's bundled sample POP3 server (popctl --sandbox COMMAND starts one for a command).

    \b
    Examples:
      popctl sandbox serve --port 1110
      popctl --sandbox list
    """


@sandbox.command(name="serve")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
def sandbox_serve(port: int) -> None:
    """Run the sample server in the foreground (Ctrl-C stops it).

    It listens on 127.0.0.1 only, with user "sandbox", password "sandbox", and about 50 sample
    messages; deletions are kept in memory and never touch real mail.

    \b
    Example:
      popctl sandbox serve --port 1110
    """
    from popctl.sandbox import SandboxServer

    refuse_unused(("debug",))
    server = SandboxServer(port=port).bind()
    host, bound = server.address
    click.echo(f"sandbox POP3 server on {host} port {bound}: user sandbox, password sandbox",
               err=True)
    if server.ca_file:
        click.echo(f"STLS certificate (trust it with --ca-file): {server.ca_file}", err=True)
    click.echo(f"try: popctl --host localhost --port {bound} --tls starttls --ca-file "
               f"{server.ca_file} --user sandbox list", err=True)
    # In this thread, where Ctrl-C only sets the server's flag: a KeyboardInterrupt could be
    # lost in a thread's start, and a signal taken on the server's thread would not wake a sleep.
    server.serve_forever()
    raise KeyboardInterrupt  # only Ctrl-C ends it: "Interrupted.", status 130, as for any command

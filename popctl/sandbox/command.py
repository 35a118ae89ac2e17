"""``python -m popctl.sandbox``: the sample server in the foreground, with argparse (the sandbox
runs without popctl's command line)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from popctl.sandbox.mailbox import sample_mailbox
from popctl.sandbox.server import SandboxServer


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the sample mailbox in the foreground, printing how to connect."""
    try:
        # Ctrl-C stops the server, a normal end (serve_forever() returns); only while starting is
        # it an interruption: no traceback then, but the shell's status for it.
        _start(argv).serve_forever()
    except KeyboardInterrupt:
        return 130
    return 0


def _start(argv: Sequence[str] | None) -> SandboxServer:
    parser = argparse.ArgumentParser(prog="python -m popctl.sandbox", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--seed", type=int, default=1, help="sample mailbox seed")
    parser.add_argument("--no-tls", action="store_true", help="do not offer STLS")
    args = parser.parse_args(argv)
    server = SandboxServer(
        sample_mailbox(args.seed), host=args.host, port=args.port, tls=not args.no_tls
    ).bind()
    host, port = server.address
    print(f"popctl sandbox POP3 server on {host} port {port}", flush=True)
    print(f"user: {server.user}  password: {server.password}", flush=True)
    if server.ca_file:
        print(f"ca_file: {server.ca_file}", flush=True)
        print(f"certificate SHA-256: {server.cert_sha256}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    return server




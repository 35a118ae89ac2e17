"""Make docs/browse.svg, the README's picture of ``popctl browse``: the sandbox's sample mailbox
at 80x24, two messages marked, the headers of one in the pane.

    PYTHONPATH=. python3 -m tests.tui.screenshot docs/browse.svg
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from popctl.app.context import Options, RunContext
from popctl.app.targets import find_secret, target_of
from popctl.cli.console import Console
from popctl.sandbox import SandboxServer
from popctl.tui.app import BrowseApp
from popctl.tui.bridge import Browser


async def shoot(path: str) -> None:
    os.environ["POPCTL_PASSWORD"] = "sandbox"
    with SandboxServer() as server, contextlib.ExitStack() as resources:
        options = Options(host="localhost", port=server.address[1], tls="starttls",
                          ca_file=server.ca_file, user="sandbox")
        context = RunContext(options, Console(options), resources)
        target = target_of(context)
        target = target._replace(credentials=find_secret(target, context.ui)[0])
        app = BrowseApp(Browser(context, target))
        async with app.run_test(size=(80, 24)) as pilot:
            deadline = time.monotonic() + 30
            while not (app.loaded and not app._busy) and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.press("down", "space", "down", "down", "space", "up", "h")
            while "Subject:" not in str(app.query_one("#detail").render()):
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            directory, name = os.path.split(os.path.abspath(path))
            app.save_screenshot(name, directory)
            await pilot.press("ctrl+c")


if __name__ == "__main__":
    asyncio.run(shoot(sys.argv[1] if len(sys.argv) > 1 else "docs/browse.svg"))

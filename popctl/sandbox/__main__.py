"""``python -m popctl.sandbox``."""

import sys

from popctl.sandbox.command import main

if __name__ == "__main__":
    sys.exit(main())

"""popctl: manage a POP3 mailbox remotely without downloading it."""

__version__ = "0.1.0"

"""The application: what each command does, callable without Click.

``context`` holds the typed values a run carries (the options, the way to talk to people);
``targets`` turns options and accounts into a server and credentials; ``runner`` runs a piece of
work in a session of one account, of several accounts at once, or of the shell; ``mailbox``,
``download``, ``accounts``, ``probe`` and ``shell`` are the commands' work. The command line
(``popctl.cli``) resolves options, calls one function here, and maps errors to exit codes.
"""

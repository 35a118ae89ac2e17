"""What the user can do about an error, in the command line's words: the one table of option
names the layers below refer to by key (``PopctlError.hint``)."""

from __future__ import annotations

from collections.abc import Mapping

from popctl.display import safe

# Each text follows the error's message as it is, its separator included.
HINTS: dict[str, str] = {
    "plaintext": "; use --tls implicit or --tls starttls, or allow it explicitly with "
                 "--allow-plaintext",
    "no-stls": ". Use --tls implicit, or --tls none if you really mean it",
    "no-pipelining": ": retry with --no-pipelining",
    "session-timeout": " (session timeout; raise it with --session-timeout)",
    "several-to-stdout": ": use --mbox - for mboxrd on standard output (each message after "
                         "its From line), or store them with --output-dir, --maildir, "
                         "--mbox FILE or --pipe COMMAND",
    "output-replaces": ", and --output replaces the file; redirect standard output instead",
    # where the server, the user and the accounts come from
    "add-account": "; add one with: popctl account add NAME --host HOST --user USER",
    "add-named-account": "; add it with: popctl account add {name} --host HOST --user USER",
    "create-config": ", or create the file with: popctl account add NAME --host HOST --user USER",
    "choose-account": ": use --account NAME ({accounts}), --host HOST (or POPCTL_HOST), or set "
                      "default = \"NAME\" in {path}",
    "no-host": ": use --host HOST (or POPCTL_HOST), or try --sandbox",
    "no-user": ": use --user NAME (or POPCTL_USER)",
    "account-or-all": ": give either --account or --all-accounts, not both",
    "one-account": " (--all-accounts and a repeated --account work with stat, list, uidl, "
                   "dele and retr --new only)",
    "shell-accounts": ": no --account or --all-accounts",
    "sandbox-accounts": ": drop --all-accounts and --account",
    # TLS mistakes and their fixes
    "use-implicit": ": use --tls implicit",
    "use-starttls": ": use --tls starttls{other}",
    "refused": "; check the host and the port (--host, --port)",
    "refused-default-port": "; if the server listens on port {port} instead, use --tls {tls}; "
                            "else give its port with --port",
    "not-pop3": "; is that a POP3 port? check the host and the port (--host, --port)",
    "maybe-implicit": "; if this is an implicit-TLS port, use --tls implicit",
    "certificate": "; pin the certificate with --fingerprint SHA256 (see it with: {see})",
    "certificate-name": "; connect by a name the certificate is for, or pin the certificate "
                        "with --fingerprint SHA256 (see it with: {see})",
    "certificate-issuer": "; trust its CA with --ca-file FILE, or pin the certificate with "
                          "--fingerprint SHA256 (see it with: {see})",
    "insecure": " (--insecure)",
    "probe-failed": "; give --tls and --port yourself (--tls none needs --allow-plaintext)",
    # the commands' own
    "confirm-yes": ": add --yes",
    "across-yes": ": add --yes (see first what would be deleted with --dry-run)",
    "one-file": "; --output FILE takes one: use --output-dir DIR",
    "use-retr": "; popctl retr {number} downloads the whole message instead",
    "no-top-filters": "; drop --from, --subject, --header, --older-than and --newer-than",
    "new-needs-uidl": ": --new cannot be used with this server",
    "renumbered": ". To fetch them all again (copies of mail already stored): popctl seen "
                  "forget --all with the same store option, then retr --new again",
}


def describe(error: BaseException) -> str:
    """An error as people read it: its message, and the hint it names."""
    hint = getattr(error, "hint", None)
    return f"{error}{words(hint, getattr(error, 'hint_args', {}))}" if hint else str(error)


def words(hint: str, args: Mapping[str, str]) -> str:
    """A hint's text, its placeholders filled (each value made safe to show: it may quote a
    host or a file name)."""
    text = HINTS[hint]
    return text.format_map({k: safe(v) for k, v in args.items()}) if args else text

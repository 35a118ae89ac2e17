"""Where retrieved messages go: standard output (as they are, or as mboxrd), one file, a
directory, a Maildir, an mbox, or a program (one process per message).

The session streams each message's bytes (as the server sent them: CRLF line ends, already
dot-unstuffed) into a :class:`MessageSink` in pieces of any size, then the caller calls
``commit``, or ``discard`` on any error. ``commit`` returns only once the message is durably on
disk (file fsync'd, renamed into place, directory fsync'd), so a caller may then delete it on the
server; until then nothing a reader would take for a message is left behind.

Every local I/O failure is a :class:`StoreError` (exit status 1, "a local write failed") with one
line naming the path and the operating system's reason. Locations are checked when a store is
made, before any network traffic.

Decisions:

* stdout, file and directory stores keep the bytes exactly as received (CRLF line ends).
* Maildir and mbox convert CRLF to LF (as every local delivery agent does); lone CRs are kept.
* Files are created mode 0600, directories 0700. --output-dir and --maildir create their
  directory when missing (not its parents: a mistyped path is an error, not a new tree).
* A file name never stands for two messages (issue 11: a UID is not a message's identity;
  popa3d gives two messages one UID, a server without UIDL has only message numbers, which
  every run starts again at 1). DirectoryStore never replaces a file: a name is taken with
  link(), which fails if the name exists. It prefers ``<uid>.eml``, the UID escaped to
  ``[A-Za-z0-9._-]`` (``%XX`` for every other byte, and for a dot that is first, last or
  follows a dot; over 200 characters, shortened with ``~`` and a hash), one name per UID.
  If that name holds other bytes, the message goes to ``<uid>~<hash>.eml`` (``<hash>``: 16 hex
  digits of the SHA-256 of the message), and without a UID to ``msg~<hash>.eml``: names that
  do not collide across runs and that the same message finds again. A name that already holds
  the same bytes (an earlier run stored the message and did not delete it: killed, or run
  without --delete) is where the message is stored: nothing is written, and it is safe to
  delete. Within one run each message gets its own file, even identical ones (``~2``, ...).
* Every store is checked when made with an unnamed file (O_TMPFILE): a named probe, still
  the fallback, could be stranded by SIGKILL. Such ``.popctl-[probe-]<pid>-*.tmp`` files of
  processes that are gone (same user, this host) are removed when a directory is checked.
* --mbox and its dotlock are opened with O_NOFOLLOW and must belong to our user: a link or a
  file planted in a shared directory is refused, never appended to or taken over.
* Maildir names are ``<secs>.M<usecs>P<pid>Q<seq>R<random>.<host>`` (cr.yp.to/proto/maildir.html),
  the host with ``/`` and ``:`` written ``\\057`` and ``\\072``; delivered by link() into new/.
* A program (PipeStore) gets each message on its standard input, LF line ends, once the whole
  message has arrived; delivered means it exited 0 (see pipe.py for the rest).
* Several messages on standard output are told apart only as mboxrd (MboxStreamStore, the
  records MboxStore writes, unlocked): the command line refuses to concatenate them raw.
* mbox is mboxrd: ``From <sender> <asctime UTC>``, the sender from the first Return-Path header
  (else MAILER-DAEMON), ``>`` added to every ``>*From `` line, a blank line after each message.
  It is locked for the whole run with fcntl (lockf) and a ``<path>.lock`` dotlock; a lock held
  elsewhere, or a stale dotlock, is an error after ``lock_timeout`` seconds, except a dotlock
  popctl itself left on this host when it was killed (its process is gone): that one is taken
  over, after cutting off the torn record the kill may have left (see MboxStore).
"""

from popctl.stores.base import MessageSink, Store, StoreError
from popctl.stores.files import DirectoryStore, FileStore, uid_filename
from popctl.stores.maildir import MaildirStore, maildir_unique_name
from popctl.stores.mbox import MboxStore, envelope_sender
from popctl.stores.pipe import PipeStore
from popctl.stores.stdout import MboxStreamStore, StdoutStore

__all__ = [
    "DirectoryStore",
    "FileStore",
    "MaildirStore",
    "MboxStore",
    "MboxStreamStore",
    "MessageSink",
    "PipeStore",
    "StdoutStore",
    "Store",
    "StoreError",
    "envelope_sender",
    "maildir_unique_name",
    "uid_filename",
]

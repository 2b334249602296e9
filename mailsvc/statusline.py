"""The systemd status line in normal operation (pure): what an operator reading `systemctl status` wants first.

"watching 3 mailboxes; outbox 0; last mail 12 s ago". Faults show instead of it (the daemon decides which).
"""

from __future__ import annotations


def ago(seconds: float) -> str:
    """A short age: "12 s", "5 min", "3 h", "2 d"; whole units, rounded down."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def status_line(mailboxes: int, outbox: int, last_mail_at: float | None, now: float) -> str:
    """The line from a few values: mailboxes watched, mails waiting to be sent, when the last mail came in."""
    watching = f"watching {mailboxes} mailbox" + ("" if mailboxes == 1 else "es")
    last = "no mail yet" if last_mail_at is None else f"last mail {ago(now - last_mail_at)} ago"
    return f"{watching}; outbox {outbox}; {last}"

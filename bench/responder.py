"""The latency baseline, run as its own process: the least an IDLE auto-responder can do.

IDLE on the folder; on EXISTS fetch the new UIDs in one command, parse each
with email.policy.default, send a short reply (In-Reply-To set) over one reused
SMTP connection, move the messages to Processed, and IDLE again. No store, no
threading, no templates. Prints "responder_ready" once it is IDLE-ready.

    python bench/responder.py HOST IMAP_PORT USER PASSWORD SMTP_PORT
"""

from __future__ import annotations

import email
import email.policy
import signal
import smtplib
import sys
from email.message import EmailMessage
from email.utils import make_msgid
from types import FrameType

from imapclient import IMAPClient

HELP = "help@example.org"
_stop = False


def _on_term(signum: int, frame: FrameType | None) -> None:
    global _stop  # noqa: PLW0603 (a signal handler's flag)
    _stop = True


def reply_to(raw: bytes) -> tuple[str, bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    sender = msg["From"].addresses[0].addr_spec if msg["From"] and msg["From"].addresses else "unknown@example.net"
    out = EmailMessage()
    out["From"] = HELP
    out["To"] = sender
    out["Subject"] = f"Re: {msg['Subject'] or ''}"
    out["Message-ID"] = make_msgid(domain="example.org")
    if msg["Message-ID"]:
        out["In-Reply-To"] = msg["Message-ID"]
    out["Auto-Submitted"] = "auto-replied"
    out.set_content("Thank you, we got your message.\n")
    return sender, out.as_bytes(policy=email.policy.SMTP)


def main(argv: list[str]) -> int:
    host, imap_port, user, password, smtp_port = argv[:5]
    signal.signal(signal.SIGTERM, _on_term)
    client = IMAPClient(host, port=int(imap_port), ssl=False, timeout=60)
    client.login(user, password)
    if not client.folder_exists("Processed"):
        client.create_folder("Processed")
    client.select_folder("INBOX")
    smtp = smtplib.SMTP(host, int(smtp_port), timeout=60)
    print("responder_ready", flush=True)
    while not _stop:
        uids = sorted(int(u) for u in client.search(["ALL"]))
        if uids:
            data = client.fetch(uids, ["BODY.PEEK[]"])
            for uid in uids:
                sender, reply = reply_to(bytes(data[uid][b"BODY[]"]))
                smtp.sendmail(HELP, [sender], reply)
            client.move(uids, "Processed")
            continue
        client.idle()
        try:
            while not _stop:
                responses = client.idle_check(timeout=1.0)
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    break
        finally:
            client.idle_done()
    smtp.quit()
    client.logout()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Mail that arrives between a pass and the start of IDLE wakes the watcher at once.

Dovecot may announce it in the same packet as the IDLE continuation; imapclient's idle_check polls the
socket and would not see a line already read into the client's buffer until the next packet (the next
mail, or the server's keep-alive minutes later).
"""

from __future__ import annotations

import threading
from pathlib import Path

from mailsvc.config import parse_config
from mailsvc.imap import ImapSource
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config


def test_mail_appended_before_idle_starts_ends_the_wait(tmp_path: Path, mailbox: Mailbox) -> None:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password, smtp_port=1,
        store=tmp_path / "mailsvc.db",
    )  # fmt: skip
    raw["imap"]["idle_renew"] = 600  # far beyond the wait below: only the new mail may end it
    config = parse_config(raw, tmp_path)
    source = ImapSource(config.imap, config.imap.secret())
    source.connect()
    try:
        for seen in range(3):  # the same session, pass after pass
            assert len(source.pending_uids()) == seen
            mailbox.append(mail(subject=f"Between pass and IDLE {seen}"))
            stop = threading.Event()
            waiter = threading.Thread(target=source.wait_for_mail, args=(stop,))
            waiter.start()
            waiter.join(timeout=10)
            woke = not waiter.is_alive()
            stop.set()
            waiter.join()
            assert woke, "the watcher slept through mail the server had announced"
    finally:
        source.close()

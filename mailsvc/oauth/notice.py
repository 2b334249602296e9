"""The mail that tells staff an account cannot log in any more, queued in the outbox like any other mail."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailsvc.config import Config
from mailsvc.errors import OAuthError, StoreError
from mailsvc.log import get_logger
from mailsvc.model import OutgoingMail
from mailsvc.oauth.tokens import TokenSet
from mailsvc.store import open_store

log = get_logger(component="oauth")


def _queues_of(config: Config, account: str) -> list[str]:
    """The queues whose mail goes through the account."""
    if account.startswith("queues."):
        return [account.split(".")[1]]
    if account == "imap":
        return [n for n, q in config.queues.items() if q.imap is None]
    return list(config.queues)


def compose(config: Config, account: str, tokens: TokenSet, exc: OAuthError) -> OutgoingMail | None:
    queues = [config.queues[n] for n in _queues_of(config, account)]
    staff = sorted({s.address for q in queues for s in q.staff})
    if not queues or not staff:
        return None
    queue = queues[0]
    domain = queue.address.rsplit("@", 1)[1]
    msg = EmailMessage()
    msg["From"] = f"{queue.display_name} <{queue.address}>"
    msg["To"] = ", ".join(staff)
    msg["Subject"] = f"mailsvc cannot log in to {tokens.user} ({exc.code})"
    msg["Date"] = format_datetime(datetime.now(UTC))
    message_id = make_msgid(domain=domain)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(
        f"mailsvc can no longer log in to the mailbox {tokens.user} ({account} in its configuration).\n\n"
        f"The identity provider answered: {exc.code}"
        + (f" ({exc.description})" if exc.description else "")
        + f"\n\nWhat to do: {exc.hint}.\n\n"
        "Until then, mail to this account is not read (or, for SMTP, not sent); nothing is lost,\n"
        "and the other accounts go on. Check with:  mailsvc oauth status  and  mailsvc doctor\n"
    )
    return OutgoingMail(message_id=message_id, mail_from=queue.address, rcpt_to=tuple(staff),
                        raw=msg.as_bytes(), purpose="login_failed")  # fmt: skip


def staff_notice(
    config: Config, account: str, notify: Callable[[], None] | None = None
) -> Callable[[TokenSet, OAuthError], bool]:
    """What TokenKeeper calls once per failure: queue the mail, then wake the sender."""

    def report(tokens: TokenSet, exc: OAuthError) -> bool:
        mail = compose(config, account, tokens, exc)
        if mail is None:
            log.warning("login_notice_skipped", account=account, reason="no staff to tell")
            return True
        try:
            store = open_store(config.store)
            try:
                with store.transaction():
                    store.enqueue(mail, None, None, datetime.now(UTC))
            finally:
                store.close()
        except (StoreError, OSError, sqlite3.Error) as exc_store:
            log.warning("login_notice_deferred", account=account, error=str(exc_store))
            return False
        log.info("login_notice_queued", account=account, message_id=mail.message_id, rcpt=list(mail.rcpt_to))
        if notify is not None:
            notify()
        return True

    return report

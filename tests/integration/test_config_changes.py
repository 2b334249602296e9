"""Cases filed under one configuration, mail arriving under the next: the store outlives a queue's config."""

from __future__ import annotations

from pathlib import Path

from mailsvc.config import parse_config
from mailsvc.ingest import Outcome, Pipeline
from mailsvc.model import MailRef
from mailsvc.store import Store
from mailsvc.testing.sandbox import mail, sandbox_config


def test_a_reply_to_a_case_of_a_removed_queue_is_still_filed_into_it(tmp_path: Path) -> None:
    raw = sandbox_config(imap_port=1, imap_user="help", smtp_port=2, store=tmp_path / "mailsvc.db")
    raw["queues"]["billing"] = {"address": "billing@example.org", "display_name": "Billing"}
    store = Store.open(tmp_path / "mailsvc.db")
    before = Pipeline(parse_config(raw, tmp_path), store)
    with store.transaction():
        outcome, case_id = before.handle(
            MailRef("INBOX", 1, 1), mail(subject="Invoice", to="billing@example.org", message_id="<i1@example.net>")
        )
    assert outcome is Outcome.FILED
    (ack,) = [row.message_id for row in store.case_outbox(case_id or 0)]

    del raw["queues"]["billing"]
    after = Pipeline(parse_config(raw, tmp_path), store)
    reply = mail(subject="Re: Invoice", message_id="<i2@example.net>", in_reply_to=ack)
    with store.transaction():
        assert after.handle(MailRef("INBOX", 1, 2), reply) == (Outcome.FILED, case_id)
    # Whatever it sends goes out under the default queue's templates and address.
    built = after.build_pending()
    assert built.failed == 0
    assert {row.state for row in store.case_outbox(case_id or 0)} == {"queued"}

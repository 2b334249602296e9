"""The digest job on a real SQLite store: a template that fails costs no period, is logged once, and the
period is sent once the template is mended."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from mailsvc.config import parse_config
from mailsvc.digest_job import DigestJob
from mailsvc.store import Store

NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


def test_a_broken_digest_template_is_logged_once_and_the_period_waits_for_the_fix(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    broken = tmp_path / "templates" / "digest.html.j2"
    broken.write_text("<p>{{ total.cases | no_such_filter }}</p>\n")
    raw = {
        "imap": {"host": "127.0.0.1", "tls": "none", "user": "help", "password": "secret"},
        "smtp": {"host": "127.0.0.1", "tls": "none", "port": 2525},
        "queues": {"help": {"address": "help@example.org"}},
        "store": {"path": "mailsvc.db"},
        "templates_dir": "templates",
        "report": {"mail_to": ["team@example.org"], "every": "daily", "at": "08:00"},
    }
    config = parse_config(raw, tmp_path)
    store = Store.open(config.store.path)
    try:
        job = DigestJob(config, store, lambda: NOW)
        with capture_logs() as logs:
            assert job.send_due() == 0
            assert job.send_due() == 0
        assert [e["event"] for e in logs] == ["digest_failed"], "logged once per period, not at every tick"
        assert "no_such_filter" in logs[0]["error"]
        assert store.db.execute("SELECT count(*) FROM digests").fetchone()[0] == 0
        assert store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0

        broken.unlink()  # the default template again
        job = DigestJob(config, store, lambda: NOW)
        assert job.send_due() == 1
        assert job.send_due() == 0
        ((purpose, rcpt),) = store.db.execute("SELECT purpose, rcpt_to FROM outbox").fetchall()
        assert (purpose, rcpt) == ("digest", "team@example.org")
    finally:
        store.close()

"""The STATUS= line: faults reported by components, else the normal state."""

from mailsvc.status import ServiceStatus


def test_faults_show_until_cleared_and_each_change_is_published_once() -> None:
    lines: list[str] = []
    status = ServiceStatus(lines.append, normal="watching INBOX")
    status.fault("smtp", "SMTP unavailable (login: 535), mail held, retrying in 30s")
    status.fault("store imap INBOX", "store unavailable (database is locked), retrying")
    status.fault("store sender", "store unavailable (database is locked), retrying")
    status.clear("smtp")
    status.clear("smtp")  # nothing to clear: nothing published
    status.clear("store imap INBOX")
    status.clear("store sender")
    assert lines == [
        "SMTP unavailable (login: 535), mail held, retrying in 30s",
        "SMTP unavailable (login: 535), mail held, retrying in 30s; store unavailable (database is locked), retrying",
        "store unavailable (database is locked), retrying",
        "watching INBOX",
    ]

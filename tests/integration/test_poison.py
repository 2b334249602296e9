"""A message whose processing kills the process is not fetched again for ever: after three unfinished
attempts it is stored raw and quarantined as `poison`, and the mail around it is answered once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mailsvc.ingest import POISON_ATTEMPTS, POISON_HOOK
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, read_rows, write_sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture

MARKER = "this-text-kills-the-process"


def test_a_message_that_crashes_the_process_is_quarantined_as_poison_after_three_attempts(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    path = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, tmp_path / "mailsvc.db")
    store = tmp_path / "mailsvc.db"
    poison = mail(subject="Strange", body=f"Hello,\n\n{MARKER}\n", message_id="<poison@example.net>")
    mailbox.append([mail(message_id="<before@example.net>"), poison, mail(message_id="<after@example.net>")])
    env = {**os.environ, POISON_HOOK: MARKER}
    codes = []
    for _ in range(POISON_ATTEMPTS + 2):
        done = subprocess.run(
            [sys.executable, "-m", "mailsvc", "once", "-c", str(path)], env=env, capture_output=True, check=False
        )
        codes.append(done.returncode)
        if done.returncode == 0:
            break
    # The first run dies in the batch of three; then the suspects are processed one by one, the poison
    # message dying twice more, until its fourth fetch stores it without processing it.
    assert codes == [70, 70, 70, 0], codes

    (row,) = read_rows(store, "SELECT state, reason, raw FROM messages WHERE uid = 2")
    assert row[0] == "quarantined" and row[1] == f"poison (attempts {POISON_ATTEMPTS})"
    assert row[2].replace(b"\r\n", b"\n") == poison.replace(b"\r\n", b"\n")
    assert read_rows(store, "SELECT uid, state FROM messages WHERE uid != 2 ORDER BY uid") == [
        (1, "filed"),
        (3, "filed"),
    ]
    assert read_rows(store, "SELECT count(*) FROM ingest_attempts") == [(0,)]
    assert [m.replace(b"\r\n", b"\n") for m in mailbox.fetch_all("Quarantine")] == [poison.replace(b"\r\n", b"\n")]
    assert not mailbox.uids()
    answered = sorted(str(c.message["In-Reply-To"]) for c in smtp.messages)
    assert answered == ["<after@example.net>", "<before@example.net>"]

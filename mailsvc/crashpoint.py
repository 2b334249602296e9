"""Crash points (a test hook in the shells): the process kills itself with SIGKILL at a named point.

The crash tests set MAILSVC_CRASH_AT to one point's name to end the daemon exactly where a crash is
hardest to survive: after the ingest COMMIT and before the IMAP move ("ingest_committed"), between two
messages of one batch ("ingest_between_messages"), after the SMTP server's 250 and before the sent mark
("smtp_accepted"), and between firing a timer and committing it ("timer_fired"). Unset, as it is in
service, `reached` only reads the environment.
"""

from __future__ import annotations

import os
import signal
import sys

from mailsvc.log import get_logger

ENV = "MAILSVC_CRASH_AT"
POINTS = frozenset({"ingest_committed", "ingest_between_messages", "smtp_accepted", "timer_fired"})


def reached(name: str) -> None:
    """Kill this process now if the environment names this point."""
    if os.environ.get(ENV) != name:
        return
    get_logger(component="crashpoint").warning("crash_point_reached", point=name)
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

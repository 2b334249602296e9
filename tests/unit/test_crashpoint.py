"""The crash-point hook: silent unless the environment names the point, then SIGKILL to this process."""

import os
import signal

import pytest

from mailsvc import crashpoint


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(crashpoint.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


def test_unset_it_does_nothing(monkeypatch: pytest.MonkeyPatch, kills: list[tuple[int, int]]) -> None:
    monkeypatch.delenv(crashpoint.ENV, raising=False)
    for point in crashpoint.POINTS:
        crashpoint.reached(point)
    assert kills == []


def test_only_the_named_point_kills(
    monkeypatch: pytest.MonkeyPatch, kills: list[tuple[int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(crashpoint.ENV, "smtp_accepted")
    crashpoint.reached("ingest_committed")
    assert kills == []
    crashpoint.reached("smtp_accepted")
    assert kills == [(os.getpid(), signal.SIGKILL)]
    assert "crash_point_reached" in capsys.readouterr().out

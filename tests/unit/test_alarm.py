"""The Alarm: an Event that `select` sees, so a lost mailbox lock ends IDLE without waiting for a timeout."""

from __future__ import annotations

import select
import socket

from mailsvc.alarm import Alarm


def test_set_makes_it_readable_for_select_and_clear_quiet_again() -> None:
    alarm = Alarm()
    try:
        assert select.select([alarm], [], [], 0)[0] == []
        alarm.set()
        assert select.select([alarm], [], [], 0)[0] == [alarm], "a select waiting on it wakes"
        alarm.set()
        alarm.clear()
        assert select.select([alarm], [], [], 0)[0] == [] and not alarm.is_set()
    finally:
        alarm.close()


def test_a_readable_socket_is_reported_and_a_cleared_alarm_stays_quiet() -> None:
    alarm = Alarm()
    sock, peer = socket.socketpair()
    try:
        alarm.set()
        assert alarm.wait_beside(sock, 86400) is False, "set: returns at once, without the socket"
        alarm.clear()
        peer.send(b"* 3 EXISTS\r\n")
        assert alarm.wait_beside(sock, 86400) is True, "the alarm's byte was drained by clear"
        assert not alarm.is_set()
        alarm.set()
        alarm.set()  # twice, then one clear: quiet again
        alarm.clear()
        sock.recv(100)
        assert alarm.wait_beside(sock, 0) is False
    finally:
        sock.close()
        peer.close()
        alarm.close()

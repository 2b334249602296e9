from mailsvc.statusline import ago, status_line


def test_the_normal_line_names_mailboxes_outbox_and_the_last_mail() -> None:
    assert status_line(3, 0, 1000.0, 1012.4) == "watching 3 mailboxes; outbox 0; last mail 12 s ago"
    assert status_line(1, 5, None, 1000.0) == "watching 1 mailbox; outbox 5; no mail yet"


def test_ages_use_one_whole_unit() -> None:
    assert [ago(s) for s in (0, 59, 60, 3599, 3600, 86399, 86400 * 3 + 5)] == [
        "0 s", "59 s", "1 min", "59 min", "1 h", "23 h", "3 d",
    ]  # fmt: skip
    assert ago(-4) == "0 s", "a clock that stepped back shows no negative age"

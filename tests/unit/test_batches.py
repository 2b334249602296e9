"""How ingest cuts the waiting messages into batches: by count, by bytes, and suspects alone."""

from mailsvc.ingest import plan_batches

MB = 1024 * 1024


def test_batches_are_bounded_by_count_and_by_bytes() -> None:
    uids = list(range(1, 8))
    sizes = {u: 10 * MB for u in uids}
    assert plan_batches(uids, sizes, set(), count=200, size=32 * MB, alone=25 * MB) == [[1, 2, 3], [4, 5, 6], [7]]
    small = {u: 1000 for u in uids}
    assert plan_batches(uids, small, set(), count=3, size=32 * MB, alone=25 * MB) == [[1, 2, 3], [4, 5, 6], [7]]


def test_eight_messages_of_24_mb_are_fetched_one_at_a_time() -> None:
    uids = list(range(1, 9))
    batches = plan_batches(uids, dict.fromkeys(uids, 24 * MB), set(), count=200, size=32 * MB, alone=25 * MB)
    assert batches == [[u] for u in uids]


def test_suspects_and_oversize_messages_go_alone_and_order_is_kept() -> None:
    uids = [1, 2, 3, 4, 5, 6]
    sizes = {1: 100, 2: 100, 3: 300 * MB, 4: 100, 5: 100, 6: 100}
    assert plan_batches(uids, sizes, {5}, count=200, size=32 * MB, alone=25 * MB) == [[1, 2], [3], [4], [5], [6]]


def test_a_message_of_unknown_size_still_gets_a_batch() -> None:
    assert plan_batches([7, 8], {}, set(), count=200, size=32 * MB, alone=25 * MB) == [[7, 8]]

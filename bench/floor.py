"""The ingest floor, run as its own process: one bulk UID FETCH with imapclient and a parse, no store.

Every message is parsed with email.policy.default; its headers are read and
its text body decoded, which is the least an ingest must do. Prints one JSON
line with its own timings.

    python bench/floor.py HOST PORT USER PASSWORD [FOLDER]
"""

from __future__ import annotations

import email
import email.policy
import json
import sys
import time

from imapclient import IMAPClient

HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References")


def touch(raw: bytes) -> int:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    size = sum(len(str(msg.get(name, ""))) for name in HEADERS)
    body = msg.get_body(("plain", "html"))
    if body is not None:
        size += len(body.get_content())
    return size


def main(argv: list[str]) -> int:
    host, port, user, password = argv[:4]
    folder = argv[4] if len(argv) > 4 else "INBOX"
    start = time.perf_counter()
    client = IMAPClient(host, port=int(port), ssl=False, timeout=300)
    client.login(user, password)
    client.select_folder(folder, readonly=True)
    connected = time.perf_counter()
    uids = client.search("ALL")
    data = client.fetch(uids, ["BODY.PEEK[]"])  # one UID FETCH for all of them
    fetched = time.perf_counter()
    chars = sum(touch(bytes(item[b"BODY[]"])) for item in data.values())
    parsed = time.perf_counter()
    client.logout()
    print(
        json.dumps(
            {
                "messages": len(data),
                "connect_s": connected - start,
                "fetch_s": fetched - connected,
                "parse_s": parsed - fetched,
                "chars": chars,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

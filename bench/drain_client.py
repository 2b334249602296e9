"""One side of the drain comparison, run as its own process (as the daemon's sender is).

    python -m bench.drain_client bare|mailsvc CONFIG RESULT_JSON

`mailsvc`: the store's queued outbox drained by mailsvc's Sender, logging as
the daemon does (JSON lines on stdout). `bare`: the same rows, read first, sent
by plain aiosmtplib loops over as many connections as the Sender may use
(smtp.connections), the rows dealt out in turn; the store is left as it was.
Either writes {"elapsed_s", "sent"} to RESULT_JSON; the clock runs from before
the SMTP connection to the last mail accepted.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

import aiosmtplib

from mailsvc.config import Config, load_config
from mailsvc.log import configure
from mailsvc.smtp import Sender
from mailsvc.store import Store


async def bare(config: Config) -> tuple[float, int]:
    db = sqlite3.connect(f"file:{config.store.path}?mode=ro", uri=True)
    rows = db.execute("SELECT mail_from, rcpt_to, raw FROM outbox WHERE state = 'queued' ORDER BY id").fetchall()
    db.close()
    lanes = config.smtp.connections

    async def lane(share: list[tuple[str, str, bytes]]) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(hostname=config.smtp.host, port=config.smtp.port, use_tls=False, start_tls=False)
        await smtp.connect()
        for mail_from, rcpt_to, raw in share:
            await smtp.sendmail(mail_from, rcpt_to.split("\n"), raw)
        return smtp

    start = time.perf_counter()
    sessions = await asyncio.gather(*(lane(rows[k::lanes]) for k in range(lanes)))
    elapsed = time.perf_counter() - start
    for smtp in sessions:
        await smtp.quit()
    return elapsed, len(rows)


async def mailsvc(config: Config) -> tuple[float, int]:
    configure(config.log.format, config.log.level)
    store = Store.open(config.store.path)
    # As `mailsvc run` opens its sender's store: an update after a send may lag a power loss.
    store.db.execute("PRAGMA synchronous = NORMAL")
    sender = Sender(config.smtp, config.smtp.secret(), store)
    start = time.perf_counter()
    sent = await sender.drain()
    elapsed = time.perf_counter() - start
    await sender.close()
    store.close()
    return elapsed, sent


def main(argv: list[str]) -> int:
    mode, config_path, result = argv[:3]
    config = load_config(Path(config_path))
    elapsed, sent = asyncio.run(bare(config) if mode == "bare" else mailsvc(config))
    Path(result).write_text(json.dumps({"elapsed_s": elapsed, "sent": sent}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

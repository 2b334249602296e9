"""The PostgreSQL store in the benchmark: ingest msg/s with 1 and 3 instances, and the cost per message
with 1,000 vs 100,000 cases, on a private cluster on 127.0.0.1 started for the run.

The instance runs share the corpus out over three folders (a queue each, every conversation in one folder):
with one folder, one instance watches it and the others can only send. Both runs have the same folders, so
3 vs 1 is what scale-out gives for the same mail: each instance watches its share and all drain the outbox."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench.corpus import CorpusMessage, Generator
from bench.env import Bench, StoredMessage, append_all, child_env, mailsvc_cmd, run_once
from bench.ingest import build_store
from bench.score import Correctness, score
from mailsvc.store import Store
from mailsvc.store.copy import copy_store
from mailsvc.store.postgres import PostgresStore, close_pools
from mailsvc.testing.postgres import PrivatePostgres
from mailsvc.testing.sandbox import write_config


def stored_messages_pg(url: str) -> list[StoredMessage]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT message_id, state, case_id, kind, subject FROM messages ORDER BY id").fetchall()
    return [StoredMessage(r[0] or "", r[1], r[2], r[3], r[4]) for r in rows]


FOLDERS = ("INBOX", "Second", "Third")  # the instance runs' watched folders


def _config(bench: Bench, folder: Path, mailbox: Any, url: str, folders: Sequence[str] = ("INBOX",)) -> Path:
    path = bench.config(folder, mailbox, folder / "unused.db")
    raw = yaml.safe_load(path.read_text())
    raw["store"] = {"url": url, "failover": 5}
    queue = raw["queues"]["help"]
    for name in folders[1:]:
        raw["queues"][name.lower()] = {**queue, "address": f"{name.lower()}@example.org", "folder": name}
    return write_config(path, raw)


def _deliver(mailbox: Any, corpus: Sequence[CorpusMessage], folders: Sequence[str]) -> None:
    """Each conversation into one folder (its replies must not overtake their request in another)."""
    shares: dict[str, list[bytes]] = {name: [] for name in folders}
    for m in corpus:
        shares[folders[zlib.crc32(m.thread.encode()) % len(folders)]].append(m.raw)
    for name, raws in shares.items():
        if name != "INBOX":
            mailbox.create_folder(name)
        append_all(mailbox, raws, folder=name)


def _shares(folder: Path, count: int) -> dict[str, list[int]]:
    """Per instance: the folders it watched, the messages it filed and the mails it sent."""
    per: dict[str, list[int]] = {"folders": [], "filed": [], "sent": []}
    for i in range(count):
        seen: Counter[str] = Counter()
        for line in (folder / f"run-{i}.log").read_text(errors="replace").splitlines():
            try:
                seen[json.loads(line)["event"]] += 1
            except (ValueError, KeyError):
                continue
        for key, event in (("folders", "mailbox_lock_acquired"), ("filed", "message_threaded"), ("sent", "mail_sent")):
            per[key].append(seen[event])
    return per


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _instances(config: Path, folder: Path, count: int, n: int, url: str, timeout: float = 1800) -> float:
    """Start `count` daemons on one store; the seconds until all `n` messages are stored and every ack is sent."""
    procs = []
    started = time.perf_counter()
    for i in range(count):
        log = (folder / f"run-{i}.log").open("wb")
        procs.append(subprocess.Popen(mailsvc_cmd("run", "-c", str(config)), stdout=log, stderr=log, env=child_env()))
    try:
        while True:
            stored = _count(url, "SELECT count(*) FROM messages")
            waiting = _count(url, "SELECT count(*) FROM outbox WHERE state = 'queued'")
            if stored >= n and waiting == 0:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{count} instance(s): {stored}/{n} stored after {timeout}s; logs in {folder}")
            time.sleep(0.05)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def run_pg_ingest(bench: Bench, pg: PrivatePostgres, n: int, seed: int) -> tuple[dict[str, Any], Correctness]:
    """The ingest phase's corpus (same seed, same bytes) into PostgreSQL: `mailsvc once`, then 1 and 3
    `mailsvc run` instances until every message is stored and acknowledged."""
    corpus = Generator(seed, "ingest").generate(n)
    result: dict[str, Any] = {}
    total = Correctness()
    for label, count in (("once", 0), ("1", 1), ("3", 3)):
        folder = bench.phase_dir(f"pg-ingest-{label}")
        mailbox = bench.mailbox(f"pg-ingest-{label}")
        folders = FOLDERS if count else ("INBOX",)
        _deliver(mailbox, corpus, folders)
        url = pg.url(pg.new_database(f"ingest_{label}"))
        PostgresStore.connect(url).close()  # the schema first: its creation is not what is measured
        close_pools()
        config = _config(bench, folder, mailbox, url, folders)
        bench.clear_mail()
        if count == 0:
            wall = run_once(config, folder / "once.log", "mailsvc once on PostgreSQL").wall_s
        else:
            wall = _instances(config, folder, count, n, url)
            result[f"pg_ingest_{label}_shares"] = _shares(folder, count)
            result["pg_ingest_folders"] = len(folders)
        result[f"pg_ingest_{label}_msgs_per_s"] = n / wall
        result[f"pg_ingest_{label}_wall_s"] = wall
        total += score(corpus, stored_messages_pg(url), bench.recorder.acks)
    return result, total


def run_pg_scale(
    bench: Bench, pg: PrivatePostgres, seed: int, sizes: tuple[int, int], new: int = 1_000, repeats: int = 2
) -> tuple[dict[str, Any], Correctness]:
    """As the SQLite scale phase: stores of `sizes` cases (built in SQLite, moved with `store copy`'s code),
    then `mailsvc once` files `new` messages into each; best of `repeats`."""
    folder = bench.phase_dir("pg-scale")
    corpus = Generator(seed, "scale", tags=False).generate(new)
    walls: dict[int, list[float]] = {size: [] for size in sizes}
    total = Correctness()
    for size in sizes:
        base = folder / f"base-{size}.db"
        build_store(base, size, seed)
        for rep in range(repeats):
            url = pg.url(pg.new_database(f"scale_{size}_{rep}"))
            source, target = Store.open(base), PostgresStore.connect(url)
            copy_store(source, target)
            target.db.execute("ANALYZE")
            source.close()
            target.close()
            close_pools()
            run_dir = folder / f"{size}-{rep}"
            run_dir.mkdir(exist_ok=True)
            mailbox = bench.mailbox(f"pg-scale-{size}-{rep}")
            append_all(mailbox, [m.raw for m in corpus])
            config = _config(bench, run_dir, mailbox, url)
            bench.clear_mail()
            walls[size].append(run_once(config, run_dir / "once.log", "mailsvc once on PostgreSQL").wall_s)
            stored = [m for m in stored_messages_pg(url) if not m.message_id.startswith("<pre.")]
            total += score(corpus, stored, bench.recorder.acks)
        base.unlink()
    small, large = sizes
    cost = {size: min(walls[size]) / new for size in sizes}
    return {
        "pg_scale_cases": list(sizes),
        "pg_scale_ms_per_msg_small": cost[small] * 1000,
        "pg_scale_ms_per_msg_large": cost[large] * 1000,
        "pg_scale_cost_ratio": cost[large] / cost[small],
        "pg_scale_wall_s": {str(k): v for k, v in walls.items()},
    }, total

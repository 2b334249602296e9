"""Ingest throughput against its floor, and the cost per message with 1,000 vs 100,000 cases in the store."""

from __future__ import annotations

import io
import json
import pstats
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bench.corpus import CorpusMessage, Generator
from bench.echoes import echoes
from bench.env import (
    HERE,
    Bench,
    append_all,
    closed_port,
    event_time,
    folder_count,
    log_events,
    mailsvc_cmd,
    run_measured,
    run_once,
    store_bytes,
    stored_messages,
)
from bench.score import Correctness, score
from mailsvc.store import Store


def _phases_of_once(log: Path, spawned_at: float) -> dict[str, float]:
    """Split a `mailsvc once` run by its log: filing (spawn to pass_finished) and sending (to the last mail_sent)."""
    events = log_events(log)
    passed = [event_time(e) for e in events if e.get("event") == "pass_finished"]
    sent = [event_time(e) for e in events if e.get("event") == "mail_sent"]
    out: dict[str, float] = {}
    if passed:
        out["filing_s"] = passed[-1] - spawned_at
        if sent:
            out["sending_s"] = max(sent) - passed[-1]
    return out


def run_ingest(
    bench: Bench, n: int, seed: int, mix: str = "default", *, smtp_down: bool = False, repeats: int = 1
) -> tuple[dict[str, Any], Correctness]:
    """The floor, then `mailsvc once`, on the same `n` messages of traffic `mix`; with `smtp_down`, once more
    on a fresh mailbox and store with the SMTP server unreachable (connection refused). With `repeats`, the
    three run that many times in turn, each on a fresh mailbox and store, and the best of each counts
    (filing and the floor are noisy by 10% from run to run here); the last run is the one scored."""
    folder = bench.phase_dir("ingest" if mix == "default" else f"ingest-{mix}")
    started = time.perf_counter()
    gen = Generator(seed, "ingest", mix=mix)
    corpus = gen.generate(n)
    generated = time.perf_counter()
    raws = [m.raw for m in corpus]
    floors: list[float] = []
    onces: list[float] = []
    down: dict[str, Any] = {}
    for rep in range(repeats):
        here = folder if rep == 0 else bench.phase_dir(f"{folder.name}/repeat-{rep + 1}")
        mailbox = bench.mailbox(f"ingest-{mix}" if rep == 0 else f"ingest-{mix}-{rep + 1}")
        before_append = time.perf_counter()
        append_all(mailbox, raws)
        appended = time.perf_counter()

        floor_log = here / "floor.log"
        floor = run_measured(
            [sys.executable, str(HERE / "floor.py"), mailbox.host, str(mailbox.port), mailbox.user, mailbox.password],
            floor_log,
        )
        if floor.returncode != 0:
            raise RuntimeError(f"the floor failed:\n{floor_log.read_text()[-2000:]}")
        floors.append(floor.wall_s)
        floor_detail = json.loads(floor_log.read_text().strip().splitlines()[-1])

        if smtp_down:  # first, so that the mailbox's cache is as warm for it as for the run with the server up
            this_down = _once_smtp_down(bench, here, corpus)
            if not down or this_down["ingest_smtp_down_wall_s"] < down["ingest_smtp_down_wall_s"]:
                down = this_down

        store = here / "mailsvc.db"
        config = bench.config(here, mailbox, store)
        bench.clear_mail()
        spawned_at = time.time()
        once = run_once(config, here / "once.log")
        onces.append(once.wall_s)
    size = store_bytes(store)
    split = _phases_of_once(here / "once.log", spawned_at)

    # Out-of-office replies and bounces answering our acknowledgements, filed by a second pass.
    answers = echoes(gen, [a.raw for a in bench.recorder.acks])
    append_all(mailbox, [m.raw for m in answers])
    second = run_measured(mailsvc_cmd("once", "-c", str(config)), here / "once-echoes.log")
    correctness = score([*corpus, *answers], stored_messages(store), bench.recorder.acks)
    left = folder_count(mailbox, "INBOX")
    kinds: dict[str, int] = {}
    for m in corpus:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1

    once_s, floor_s = min(onces), min(floors)
    result: dict[str, Any] = {
        "ingest_msgs_per_s": n / once_s,
        "floor_msgs_per_s": n / floor_s,
        "ingest_floor_ratio": floor_s / once_s,
        "ingest_wall_s": once_s,
        "floor_wall_s": floor_s,
        "ingest_walls_s": onces,
        "floor_walls_s": floors,
        "ingest_filing_s": split.get("filing_s"),
        "ingest_sending_s": split.get("sending_s"),
        "floor_detail": floor_detail,
        "peak_rss_mb_ingest": once.peak_rss_mb,
        "peak_rss_mb_floor": floor.peak_rss_mb,
        "store_bytes": size,
        "store_bytes_per_1k_msgs": size / (n / 1000),
        "corpus_bytes_per_1k_msgs": sum(len(m.raw) for m in corpus) / (n / 1000),
        "corpus_kinds": kinds,
        "corpus_threads": len({m.thread for m in corpus}),
        "corpus_generate_s": generated - started,
        "append_s": appended - before_append,
        "echo_messages": len(answers),
        "echo_once_exit": second.returncode,
        "inbox_left_after": left,
        "repeats": repeats,
        "correctness": correctness.as_dict(),
    }
    if down:
        down["ingest_smtp_down_ratio"] = down["ingest_smtp_down_msgs_per_s"] / result["ingest_msgs_per_s"]
        result.update(down)
    return result, correctness


def _once_smtp_down(bench: Bench, folder: Path, corpus: list[CorpusMessage]) -> dict[str, Any]:
    """`mailsvc once` over the same messages with nothing listening on the SMTP port: every message filed,
    every acknowledgement queued, one connection attempt, exit 1 (mail is still queued)."""
    down = folder / "smtp-down"
    down.mkdir(exist_ok=True)
    mailbox = bench.mailbox(f"{folder.name}-smtp-down")
    append_all(mailbox, [m.raw for m in corpus])
    store = down / "mailsvc.db"
    config = bench.config(down, mailbox, store, smtp_port=closed_port())
    log = down / "once.log"
    once = run_measured(mailsvc_cmd("once", "-c", str(config)), log)
    events = log_events(log)
    refused = [e for e in events if e.get("event") == "smtp_unavailable"]
    filed = sum(e.get("filed", 0) for e in events if e.get("event") == "pass_finished")
    if once.returncode != 1 or not refused or filed == 0:
        raise RuntimeError(f"mailsvc once with SMTP down: exit {once.returncode}\n{log.read_text()[-3000:]}")
    queued = stored_messages(store)
    return {
        "ingest_smtp_down_msgs_per_s": len(corpus) / once.wall_s,
        "ingest_smtp_down_wall_s": once.wall_s,
        "ingest_smtp_down_filed": filed,
        "ingest_smtp_down_stored": len(queued),
        "ingest_smtp_down_connection_attempts": len(refused),
        "ingest_smtp_down_left_in_inbox": folder_count(mailbox, "INBOX"),
    }


def profile_top(prof: Path, top: int = 10) -> list[dict[str, Any]]:
    """The `top` entries by cumulative time: function, calls, own and cumulative seconds."""
    stats = pstats.Stats(str(prof))
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({name})" if line else name
        rows.append({"function": where, "calls": calls, "tottime_s": round(own, 3), "cumtime_s": round(cumulative, 3)})
    rows.sort(key=lambda r: -r["cumtime_s"])
    return rows[:top]


def profile_once(bench: Bench, n: int, seed: int, top: int = 15) -> tuple[str, Path]:
    """`mailsvc once` under cProfile on the same corpus, fresh mailbox and store: the top entries by
    cumulative and by total time. Profiling slows it down; the figures above come from the plain run."""
    folder = bench.phase_dir("ingest-profile")
    mailbox = bench.mailbox("profile")
    append_all(mailbox, [m.raw for m in Generator(seed, "ingest").generate(n)])
    config = bench.config(folder, mailbox, folder / "mailsvc.db")
    prof = folder / "once.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "mailsvc", "once", "-c", str(config)]
    bench.clear_mail()
    done = run_measured(cmd, folder / "once.log")
    if done.returncode != 0:
        raise RuntimeError(f"profiled mailsvc once failed:\n{(folder / 'once.log').read_text()[-3000:]}")
    text = io.StringIO()
    for order in ("cumulative", "tottime"):
        text.write(f"--- mailsvc once, N={n}, under cProfile ({done.wall_s:.1f} s): top {top} by {order}\n")
        pstats.Stats(str(prof), stream=text).strip_dirs().sort_stats(order).print_stats(top)
    # Committed with the results: no path of the machine that ran it.
    return text.getvalue().replace(str(folder), "<bench>"), prof


# -- scale --------------------------------------------------------------------------------------------------

_RAW = (
    "Return-Path: <{addr}>\r\nDelivered-To: help@example.org\r\nReceived: from mail.example.net "
    "(mail.example.net [192.0.2.7])\r\n\tby mx.example.org (Postfix) with ESMTPS id 4ZX{n:08X}\r\n\tfor "
    "<help@example.org>; Tue, 03 Feb 2026 10:00:00 +0100\r\nFrom: Requester {n} <{addr}>\r\nTo: help@example.org\r\n"
    "Subject: {subject}\r\nDate: Tue, 03 Feb 2026 10:00:00 +0100\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
)
_BODY = (
    "Hello,\r\n\r\nsince this morning the printer on floor {floor} stops after the first page and shows a paper "
    "jam, although there is no paper stuck anywhere. I restarted it twice and also tried another tray, but the "
    "problem is still there. Could you please have a look today? The asset number on the sticker is NB-{n}.\r\n\r\n"
    "Thanks,\r\nRequester {n}\r\n\r\n-- \r\nRequester {n}\r\nExample Corp, Building {floor}\r\nPhone +1 555 0100 "
    "ext. {floor}{floor}\r\nThis e-mail may contain confidential information. If you are not the intended "
    "recipient, please notify the sender and delete it. Any unauthorised copying, disclosure or distribution of "
    "the material in this e-mail is strictly forbidden.\r\n" * 2
)


def build_store(path: Path, cases: int, seed: int) -> None:
    """A store as if `cases` cases had been worked: each with its request (~2 KB raw), some a reply,
    the acknowledgement sent, the Message-IDs linked and the history written. One transaction."""
    Store.open(path).close()
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    t0 = 1.70e9
    msg_id = 0
    for start in range(1, cases + 1, 5000):
        cases_rows, messages, links, outbox, events = [], [], [], [], []
        for case in range(start, min(cases, start + 4999) + 1):
            at = t0 + case * 300.0
            addr = f"requester{case % 7919}@example.net"
            subject = f"Printer on floor {case % 9} jams (asset NB-{case})"
            status = rng.choices(("closed", "resolved", "waiting", "open"), weights=(85, 8, 3, 4))[0]
            cases_rows.append((case, "help", subject, addr, f"Requester {case}", status, at, at + 3600))
            first_row = msg_id + 1
            for k in range(2 if rng.random() < 0.4 else 1):
                msg_id += 1
                mid = f"<pre.{case}.{k}.{rng.getrandbits(40):x}@example.net>"
                body = _BODY.format(floor=case % 9, n=case)
                raw = _RAW.format(addr=addr, n=case, subject=subject, mid=mid, body=body).encode()
                digest = f"{rng.getrandbits(128):032x}{rng.getrandbits(128):032x}"
                kind = "request" if k == 0 else "requester_reply"
                messages.append((msg_id, case, "filed", kind, kind, "INBOX", 1, msg_id, mid, digest,
                                 f"{mid} {digest}", addr, f"Requester {case}", subject, at, at + k * 600,
                                 body.replace("\r\n", "\n"), "", raw))  # fmt: skip
                links.append((mid, case))
                events.append((case, at + k * 600, "message_filed", kind))
            ack = f"<{case}.{rng.getrandbits(40)}.case{case}@example.org>"
            outbox.append((case, case, first_row, "ack", ack, "help@example.org", addr, _BODY.encode()[:1500],
                           "sent", 1, at, at, at + 1, ""))  # fmt: skip
            links.append((ack, case))
            events += [(case, at, "case_opened", addr), (case, at, "ack_queued", addr)]
        db.executemany(
            "INSERT INTO cases (id, queue, subject, requester, requester_name, status, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            cases_rows,
        )
        db.executemany(
            "INSERT INTO messages (id, case_id, state, kind, reason, mailbox, uidvalidity, uid, message_id, "
            "content_hash, dedupe_key, from_addr, from_name, subject, sent_at, received_at, body_text, defects, raw) "
            "VALUES (" + ",".join("?" * 19) + ")",
            messages,
        )
        db.executemany("INSERT INTO case_message_ids (message_id, case_id) VALUES (?,?)", links)
        db.executemany(
            "INSERT INTO outbox (id, case_id, cause, purpose, message_id, mail_from, rcpt_to, raw, state, attempts, "
            "created_at, next_attempt_at, sent_at, last_error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            outbox,
        )
        db.executemany("INSERT INTO case_events (case_id, at, event, detail) VALUES (?,?,?,?)", events)
    db.execute("INSERT INTO mailboxes (name, uidvalidity, last_uid) VALUES ('INBOX', 1, ?)", (msg_id,))
    db.execute("COMMIT")
    # No ANALYZE: mailsvc never runs it, so its stores have no planner statistics. Statistics of this
    # synthetic store (every outbox row 'sent', no draft) led SQLite to scan the whole outbox for pending
    # drafts: 59 ms a pass at 100,000 cases, a cost no store mailsvc wrote would have.
    db.close()


def run_scale(
    bench: Bench, seed: int, sizes: tuple[int, int] = (1_000, 100_000), new: int = 1_000, repeats: int = 2
) -> tuple[dict[str, Any], Correctness]:
    folder = bench.phase_dir("scale")
    corpus = Generator(seed, "scale", tags=False).generate(new)  # no tags: the same bytes suit both stores
    bases: dict[int, Path] = {}
    build_s: dict[int, float] = {}
    for size in sizes:
        t = time.perf_counter()
        bases[size] = folder / f"base-{size}.db"
        build_store(bases[size], size, seed)
        build_s[size] = time.perf_counter() - t
    walls: dict[int, list[float]] = {size: [] for size in sizes}
    filing: dict[int, list[float]] = {size: [] for size in sizes}
    rss: dict[int, float] = {}
    total = Correctness()
    for rep in range(repeats):
        for size in sizes:  # interleaved, so a noisy minute hurts both sizes alike
            run_dir = folder / f"{size}-{rep}"
            run_dir.mkdir(exist_ok=True)
            store = run_dir / "mailsvc.db"
            shutil.copyfile(bases[size], store)
            mailbox = bench.mailbox(f"scale-{size}")
            append_all(mailbox, [m.raw for m in corpus])
            config = bench.config(run_dir, mailbox, store)
            bench.clear_mail()
            spawned_at = time.time()
            once = run_once(config, run_dir / "once.log")
            walls[size].append(once.wall_s)
            filing[size].append(_phases_of_once(run_dir / "once.log", spawned_at).get("filing_s", once.wall_s))
            rss[size] = max(rss.get(size, 0.0), once.peak_rss_mb)
            total += score(corpus, stored_messages(store), bench.recorder.acks)
            store.unlink()
            for extra in ("-wal", "-shm"):
                Path(f"{store}{extra}").unlink(missing_ok=True)
    small, large = sizes
    cost = {size: min(walls[size]) / new for size in sizes}
    result: dict[str, Any] = {
        "scale_cases": list(sizes),
        "scale_new_messages": new,
        "scale_repeats": repeats,
        "scale_ms_per_msg_1k": cost[small] * 1000,
        "scale_ms_per_msg_100k": cost[large] * 1000,
        "scale_cost_ratio_100k_vs_1k": cost[large] / cost[small],
        "scale_filing_ratio_100k_vs_1k": min(filing[large]) / min(filing[small]),
        "scale_wall_s": {str(k): v for k, v in walls.items()},
        "scale_base_store_bytes": {str(k): store_bytes(p) for k, p in bases.items()},
        "scale_build_s": {str(k): v for k, v in build_s.items()},
        "scale_peak_rss_mb": {str(k): v for k, v in rss.items()},
        "correctness": total.as_dict(),
    }
    for path in bases.values():
        path.unlink()
    return result, total

"""Latency from APPEND to acknowledgement (IDLE, polling, and a bare responder), and the memory soak."""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from typing import Any

from bench.corpus import Generator
from bench.env import HERE, Ack, Bench, Service, event_time, mailsvc_cmd, stored_messages
from bench.score import Correctness, score

MODES = {
    "idle": "mailsvc run, IDLE",
    "poll": "mailsvc run, polling every 1 s",
    "bare": "bare IDLE responder (bench/responder.py)",
}
POLL_INTERVAL = 1.0


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _start(bench: Bench, mode: str, name: str) -> tuple[Service, Any, Any]:
    folder = bench.phase_dir(name)
    mailbox = bench.mailbox(name)
    store = folder / "mailsvc.db"
    if mode == "bare":
        cmd = [sys.executable, str(HERE / "responder.py"), mailbox.host, str(mailbox.port), mailbox.user,
               mailbox.password, str(bench.smtp.port)]  # fmt: skip
        service = Service(cmd, folder / "responder.log")
        service.wait_for_line("responder_ready")
    else:
        imap: dict[str, Any] = {} if mode == "idle" else {"idle": False, "poll_interval": POLL_INTERVAL}
        config = bench.config(folder, mailbox, store, **imap)
        service = Service(mailsvc_cmd("run", "-c", str(config)), folder / "daemon.log")
        service.wait_for_line('"imap_connected"')
    time.sleep(0.5)  # from the first (empty) pass into IDLE or the poll wait
    return service, mailbox, store


def _breakdown(service: Service, appended: dict[str, float]) -> dict[str, float]:
    """Where the time goes, medians from the daemon's log: APPEND to filed (the server's notice, fetch,
    parse, thread, commit), then filed to mail_sent (sender wake-up, SMTP)."""
    events = service.events()
    filed: dict[str, float] = {}
    case_of: dict[int, str] = {}
    sent: dict[str, float] = {}
    for e in events:
        mid, name = e.get("message_id"), e.get("event")
        if name == "message_filed" and mid in appended:
            filed.setdefault(mid, event_time(e))
        elif name == "case_opened" and mid in appended:
            case_of[int(e["case_id"])] = mid
        elif name == "mail_sent" and e.get("case_id") in case_of:
            sent.setdefault(case_of[int(e["case_id"])], event_time(e))
    to_filed = [filed[m] - appended[m] for m in filed]
    to_sent = [sent[m] - filed[m] for m in sent if m in filed]
    return {
        "append_to_filed_p50_s": statistics.median(to_filed) if to_filed else math.nan,
        "filed_to_sent_p50_s": statistics.median(to_sent) if to_sent else math.nan,
    }


def _first_arrivals(acks: list[Ack]) -> dict[str, float]:
    first: dict[str, float] = {}
    for ack in sorted(acks, key=lambda a: a.received_at):
        first.setdefault(ack.in_reply_to, ack.received_at)
    return first


def run_latency(bench: Bench, mode: str, count: int, seed: int) -> tuple[dict[str, Any], Correctness | None]:
    """`count` requests appended one by one at random 0-500 ms intervals; each timed to its ack's arrival."""
    service, mailbox, store = _start(bench, mode, f"latency-{mode}")
    bench.clear_mail()
    requests = Generator(seed, "latency").requests(count)  # the same mail for every mode
    pause = random.Random(f"{seed}:latency-pauses")
    appended: dict[str, float] = {}
    try:
        with mailbox.client() as client:
            for msg in requests:
                time.sleep(pause.uniform(0.0, 0.5))
                client.append("INBOX", msg.raw)
                appended[msg.message_id] = time.time()
        bench.recorder.wait_for(count, timeout=30 + 2 * POLL_INTERVAL)
        time.sleep(0.5)  # room for a late duplicate to show
    finally:
        finished = service.stop()
    acks = bench.recorder.acks
    first = _first_arrivals(acks)
    latencies = [first[mid] - at for mid, at in appended.items() if mid in first]
    result = {
        "mode": MODES[mode],
        "requests": count,
        "answered": len(latencies),
        "p50_s": percentile(latencies, 50),
        "p90_s": percentile(latencies, 90),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies, default=math.nan),
        "mean_s": statistics.fmean(latencies) if latencies else math.nan,
        "peak_rss_mb": finished.peak_rss_mb,
        "exit_code": finished.returncode,
    }
    if mode == "bare":
        return result, None
    result.update(_breakdown(service, appended))
    correctness = score(requests, stored_messages(store), acks)
    result["correctness"] = correctness.as_dict()
    return result, correctness


def run_soak(bench: Bench, minutes: float, rate: float, seed: int) -> tuple[dict[str, Any], Correctness]:
    """Mixed traffic at `rate` messages/s for `minutes` into an IDLE daemon; its RSS sampled every 10 s."""
    service, mailbox, store = _start(bench, "idle", "soak")
    bench.clear_mail()
    corpus = Generator(seed, "soak").generate(max(1, int(minutes * 60 * rate)))
    samples: list[tuple[float, float]] = []
    try:
        with mailbox.client() as client:
            start = time.monotonic()
            next_sample = start
            for i, msg in enumerate(corpus):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                client.append("INBOX", msg.raw)
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic() - start, service.rss_mb()))
                    next_sample += 10.0
                    if i and i % (int(rate) * 300) == 0:
                        print(f"   soak: {i}/{len(corpus)} messages, RSS {samples[-1][1]:.1f} MB", file=sys.stderr)
        bench.recorder.wait_for(sum(m.wants_ack for m in corpus), timeout=60)
        samples.append((time.monotonic() - start, service.rss_mb()))
        time.sleep(0.5)
    finally:
        finished = service.stop()
    duration = samples[-1][0] if samples else 0.0
    warm = [r for t, r in samples if 0.1 * duration <= t <= 0.2 * duration] or [samples[0][1]]
    end = [r for t, r in samples if t >= 0.9 * duration] or [samples[-1][1]]
    half = [(t, r) for t, r in samples if t >= duration / 2]
    slope = _slope(half) * 3600 if len(half) > 2 else 0.0
    growth = statistics.median(end) - statistics.median(warm)
    correctness = score(corpus, stored_messages(store), bench.recorder.acks)
    return {
        "soak_minutes": minutes,
        "soak_rate_msgs_per_s": rate,
        "soak_messages": len(corpus),
        "soak_rss_mb_after_warmup": statistics.median(warm),
        "soak_rss_mb_at_end": statistics.median(end),
        "soak_rss_growth_mb": growth,
        "soak_rss_slope_mb_per_h_second_half": slope,
        "soak_peak_rss_mb": finished.peak_rss_mb,
        "soak_samples": samples,
        "correctness": correctness.as_dict(),
    }, correctness


def _slope(points: list[tuple[float, float]]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0

"""The mailsvc benchmark: `python bench/run.py` sets up everything on 127.0.0.1, measures, reports.

A private Dovecot, an SMTP capture server and fresh stores, all under a
temporary folder. Every figure is printed beside a baseline measured in the
same run (these machines are noisy), and written as JSON to
bench/results/latest.json. Exit code 0 when it ran, 1 when a correctness check
failed (threading below 100%, a duplicate or missing acknowledgement, a lost
message), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.drain import run_drain
from bench.env import Bench
from bench.ingest import profile_once, profile_top, run_ingest, run_scale
from bench.latency import run_latency, run_soak
from bench.postgres import run_pg_ingest, run_pg_scale
from bench.report import Row, table, write_json
from bench.score import Correctness
from mailsvc.testing.postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="messages in the ingest run (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="corpus seed: same seed, same bytes (default 1)")
    p.add_argument("--mix", default="default,replies",
                   help="traffic mixes of the ingest phase (default: default,replies); the first is also run with "
                        "the SMTP server down")  # fmt: skip
    p.add_argument("--latency-count", type=int, default=200, help="requests per latency run (default 200)")
    p.add_argument("--poll-count", type=int, help="requests in the polling run (default: --latency-count)")
    p.add_argument("--skip-scale", action="store_true", help="leave out the 1k vs 100k cases comparison")
    p.add_argument(
        "--only",
        default="ingest,latency,scale,drain,postgres",
        help="comma-separated phases: ingest,latency,scale,drain,postgres,soak (default: all but soak)",
    )
    p.add_argument(
        "--ingest-repeats",
        type=int,
        default=2,
        help="runs of the floor, of `once` and of `once` with SMTP down, in turn; best counts (default 2)",
    )
    p.add_argument("--scale-cases", default="1000,100000", help="existing cases to compare (default 1000,100000)")
    p.add_argument("--scale-repeats", type=int, default=2, help="runs per store size, best counts (default 2)")
    p.add_argument("--pg-scale-cases", help="existing cases to compare on PostgreSQL (default: --scale-cases)")
    p.add_argument("--drain-count", type=int, default=5_000, help="queued mails in the drain run (default 5000)")
    p.add_argument("--soak", type=float, nargs="?", const=30.0, metavar="MINUTES",
                   help="also run the memory soak (default 30 minutes at --soak-rate)")  # fmt: skip
    p.add_argument("--soak-rate", type=float, default=5.0, help="messages per second in the soak (default 5)")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="JSON file (or folder) to write")
    p.add_argument("--save", action="store_true", help="also write bench/results/<YYYY-MM-DD>.json")
    p.add_argument("--profile", action="store_true", help="also run the ingest under cProfile; print the top entries")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, stores) for inspection")
    return p.parse_args(argv)


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


_T0 = time.perf_counter()


def _step(text: str) -> None:
    print(f"== {time.perf_counter() - _T0:6.1f} s  {text}", file=sys.stderr, flush=True)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def build_rows(r: dict[str, Any], c: Correctness) -> list[Row]:
    rows: list[Row] = []
    if "ingest_msgs_per_s" in r:
        ratio = r["ingest_floor_ratio"]
        rows.append(Row(f"ingest, msg/s (N={r['n']}, {r['ingest_mix']} mix)", r["ingest_msgs_per_s"],
                        r["floor_msgs_per_s"], "floor", "ratio >= 0.8", ratio >= 0.8))  # fmt: skip
        for key, other in r.items():
            if key.startswith("ingest_") and isinstance(other, dict) and "ingest_floor_ratio" in other:
                mix = key.removeprefix("ingest_")
                rows.append(Row(f"ingest, msg/s (N={r['n']}, {mix} mix)", other["ingest_msgs_per_s"],
                                other["floor_msgs_per_s"], "floor", "ratio >= 0.8",
                                other["ingest_floor_ratio"] >= 0.8))  # fmt: skip
    if "ingest_smtp_down_msgs_per_s" in r:
        rows.append(Row("ingest with SMTP down, msg/s", r["ingest_smtp_down_msgs_per_s"], r["ingest_msgs_per_s"],
                        "SMTP up", "ratio >= 0.9", r["ingest_smtp_down_ratio"] >= 0.9))  # fmt: skip
    idle, poll, bare = r.get("latency_idle"), r.get("latency_poll"), r.get("latency_bare")
    if idle:
        for q, target, limit in (("p50", "< 250 ms", 0.25), ("p90", "", None), ("p99", "< 1000 ms", 1.0),
                                 ("max", "", None)):  # fmt: skip
            value = idle[f"{q}_s"]
            rows.append(Row(f"latency IDLE {q}, ms ({idle['answered']}/{idle['requests']})", _ms(value),
                            _ms(bare[f"{q}_s"]) if bare else None, "bare", target,
                            None if limit is None else value < limit))  # fmt: skip
    if poll:
        for q in ("p50", "p90", "p99", "max"):
            rows.append(Row(f"latency polling 1 s {q}, ms ({poll['answered']}/{poll['requests']})", _ms(poll[f"{q}_s"]),
                            _ms(idle[f"{q}_s"]) if idle else None, "IDLE"))  # fmt: skip
    if "scale_cost_ratio_100k_vs_1k" in r:
        small, large = r["scale_cases"]
        rows.append(Row(f"ms per message, {large:,} vs {small:,} cases", r["scale_ms_per_msg_100k"],
                        r["scale_ms_per_msg_1k"], f"{small:,}", "ratio <= 1.2",
                        r["scale_cost_ratio_100k_vs_1k"] <= 1.2, "{:.2f}"))  # fmt: skip
    each = f", {r['pg_ingest_folders']} folders" if "pg_ingest_folders" in r else ""
    pg_runs = (("once", "PostgreSQL, once"), ("1", f"PostgreSQL, 1 instance{each}"),
               ("3", f"PostgreSQL, 3 instances{each}"))  # fmt: skip
    for label, name in pg_runs:
        key = f"pg_ingest_{label}_msgs_per_s"
        if key in r and "ingest_msgs_per_s" in r:
            rows.append(Row(f"ingest {name}, msg/s (N={r['n']})", r[key], r["ingest_msgs_per_s"], "SQLite once"))
        elif key in r:
            rows.append(Row(f"ingest {name}, msg/s (N={r['n']})", r[key]))
    if "pg_ingest_3_msgs_per_s" in r:
        rows.append(Row("PostgreSQL, 3 instances vs 1, msg/s", r["pg_ingest_3_msgs_per_s"], r["pg_ingest_1_msgs_per_s"],
                        "1 instance", fmt="{:.1f}"))  # fmt: skip
    if "pg_scale_cost_ratio" in r:
        small, large = r["pg_scale_cases"]
        rows.append(Row(f"PostgreSQL ms per message, {large:,} vs {small:,} cases", r["pg_scale_ms_per_msg_large"],
                        r["pg_scale_ms_per_msg_small"], f"{small:,}", "ratio <= 1.2", r["pg_scale_cost_ratio"] <= 1.2,
                        "{:.2f}"))  # fmt: skip
    if "store_bytes_per_1k_msgs" in r:
        rows.append(Row("store on disk per 1,000 msgs, MB", r["store_bytes_per_1k_msgs"] / 1e6,
                        r["corpus_bytes_per_1k_msgs"] / 1e6, "raw mail", fmt="{:.2f}"))  # fmt: skip
    if "peak_rss_mb_ingest" in r:
        rows.append(Row(f"peak RSS, ingest of {r['n']}, MB", r["peak_rss_mb_ingest"], r["peak_rss_mb_floor"],
                        "floor", "< 150 MB", r["peak_rss_mb_ingest"] < 150))  # fmt: skip
    if idle:
        rows.append(Row("peak RSS, IDLE run, MB", idle["peak_rss_mb"], bare["peak_rss_mb"] if bare else None, "bare",
                        "< 150 MB", idle["peak_rss_mb"] < 150))  # fmt: skip
    if "soak_rss_growth_mb" in r:
        grew = r["soak_rss_growth_mb"]
        rows.append(Row(f"soak {r['soak_minutes']:g} min: RSS growth, MB", grew, r["soak_rss_mb_after_warmup"],
                        "after warm-up", "<= 5 MB", grew <= 5))  # fmt: skip
        rows.append(Row("soak peak RSS, MB", r["soak_peak_rss_mb"], None, "", "< 150 MB", r["soak_peak_rss_mb"] < 150))
    if "drain_msgs_per_s" in r:
        rows.append(Row(f"outbox drain, msg/s ({r['drain_messages']})", r["drain_msgs_per_s"],
                        r["drain_baseline_msgs_per_s"], "aiosmtplib loop", "ratio >= 0.5",
                        r["drain_ratio"] >= 0.5))  # fmt: skip
    rows += [
        Row(f"threading score, % ({c.in_expected_case}/{c.messages})", c.threading_score * 100, target="100%",
            passed=c.threading_score == 1.0, fmt="{:.2f}"),
        Row("duplicate acknowledgements", c.duplicate_acks, target="0", passed=c.duplicate_acks == 0, fmt="{:.0f}"),
        Row("lost messages", c.lost, target="0", passed=c.lost == 0, fmt="{:.0f}"),
        Row("missing acknowledgements", c.missing_acks, target="0", passed=c.missing_acks == 0, fmt="{:.0f}"),
        Row("acks to automatic mail or replies", c.unexpected_acks, target="0", passed=c.unexpected_acks == 0,
            fmt="{:.0f}"),
    ]  # fmt: skip
    return rows


def measure(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], Correctness]:
    r: dict[str, Any] = {"n": args.n, "seed": args.seed}
    total = Correctness()
    phases = set(args.only.split(","))
    with Bench(work) as bench:
        if "ingest" in phases:
            mixes = args.mix.split(",")
            for k, mix in enumerate(mixes):
                down = " and with SMTP down" if k == 0 else ""
                _step(f"ingest, {mix} mix: {args.n} messages, floor first, then `mailsvc once`{down}")
                ingest, c = run_ingest(bench, args.n, args.seed, mix, smtp_down=k == 0, repeats=args.ingest_repeats)
                total += c
                if k == 0:
                    r["ingest_mix"] = mix
                    r["ingest_correctness"] = ingest.pop("correctness")
                    r.update(ingest)
                else:
                    r[f"ingest_floor_ratio_{mix}"] = ingest["ingest_floor_ratio"]
                    r[f"ingest_{mix}"] = ingest
            if args.profile:
                _step("profile: the same ingest under cProfile")
                text, prof = profile_once(bench, args.n, args.seed)
                r["ingest_profile"] = text
                r["ingest_profile_top10"] = profile_top(prof)
                r["ingest_profile_file"] = str(prof) if args.keep else None  # --keep keeps it for snakeviz & co.
        if "latency" in phases:
            modes = (("idle", args.latency_count), ("poll", args.poll_count or args.latency_count),
                     ("bare", args.latency_count))  # fmt: skip
            for mode, count in modes:
                _step(f"latency: {count} requests, {mode}")
                result, c_lat = run_latency(bench, mode, count, args.seed)
                r[f"latency_{mode}"] = result
                if c_lat is not None:
                    total += c_lat
            for mode, _ in modes:
                r.update(
                    {f"{mode}_latency_{q}_s": r[f"latency_{mode}"][f"{q}_s"] for q in ("p50", "p90", "p99", "max")}
                )
            r["peak_rss_mb_idle"] = r["latency_idle"]["peak_rss_mb"]
        if "scale" in phases and not args.skip_scale:
            small, large = (int(x) for x in args.scale_cases.split(","))
            _step(f"scale: 1000 new messages into stores of {small} and {large} cases, {args.scale_repeats}x each")
            scale, c_scale = run_scale(bench, args.seed, (small, large), repeats=args.scale_repeats)
            r["scale_correctness"] = scale.pop("correctness")
            r.update(scale)
            total += c_scale
        if "drain" in phases:
            _step(f"drain: {args.drain_count} queued mails, Sender vs a bare aiosmtplib loop")
            r.update(run_drain(bench, args.drain_count))
        if "postgres" in phases:
            with PrivatePostgres.in_temp_dir() as pg:
                _step(f"postgres: the ingest corpus ({args.n}) by `mailsvc once`, then 1 and 3 `mailsvc run` instances")
                pg_ingest, c_pg = run_pg_ingest(bench, pg, args.n, args.seed)
                r.update(pg_ingest)
                total += c_pg
                if not args.skip_scale:
                    small, large = (int(x) for x in (args.pg_scale_cases or args.scale_cases).split(","))
                    _step(f"postgres scale: 1000 new messages into stores of {small} and {large} cases")
                    repeats = args.scale_repeats
                    pg_scale, c_pg_scale = run_pg_scale(bench, pg, args.seed, (small, large), repeats=repeats)
                    r.update(pg_scale)
                    total += c_pg_scale
        if args.soak or "soak" in phases:
            minutes = args.soak or 30.0
            _step(f"soak: {minutes:g} minutes at {args.soak_rate:g} msg/s")
            soak, c_soak = run_soak(bench, minutes, args.soak_rate, args.seed)
            r["soak_correctness"] = soak.pop("correctness")
            r.update(soak)
            total += c_soak
    _step("done")
    return r, total


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    work = Path(tempfile.mkdtemp(prefix="mailsvc-bench-"))
    started = time.perf_counter()
    _step(f"work folder {work}")
    try:
        r, total = measure(args, work)
    except Exception:
        traceback.print_exc()
        print(f"bench: could not run; logs under {work}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    r.update(
        {
            "threading_score": total.threading_score,
            "duplicate_acks": total.duplicate_acks,
            "lost_messages": total.lost,
            "missing_acks": total.missing_acks,
            "unexpected_acks": total.unexpected_acks,
            "correct": total.ok,
            "correctness": total.as_dict(),
            "git_commit": _git_commit(),
            "python": platform.python_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": len(os.sched_getaffinity(0)),
            "bench_wall_s": time.perf_counter() - started,
        }
    )
    rows = build_rows(r, total)
    r["table"] = [{"figure": row.figure, "mailsvc": row.mailsvc, "baseline": row.baseline, "ratio": row.ratio,
                   "target": row.target, "passed": row.passed} for row in rows]  # fmt: skip
    print(table(rows))
    if "ingest_profile" in r:
        print("\n" + r["ingest_profile"])
    if total.examples:
        print("\nfirst problems found:", file=sys.stderr)
        for example in total.examples[:5]:
            print(f"  {example}", file=sys.stderr)
    out = args.out / "latest.json" if args.out.is_dir() else args.out
    write_json(out, r)
    if args.save:
        write_json(RESULTS / f"{datetime.now(UTC):%Y-%m-%d}.json", r)
    print(f"\nwrote {out}; the run took {r['bench_wall_s']:.0f} s on {r['cpus']} CPU(s), commit {r['git_commit']}")
    return 0 if total.ok else 1


if __name__ == "__main__":
    sys.exit(main())

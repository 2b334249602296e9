"""bench/run.py still works: a small run end to end. It checks correctness figures, never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "n", "seed", "git_commit", "python", "date",
    "ingest_msgs_per_s", "floor_msgs_per_s", "ingest_floor_ratio",
    "idle_latency_p50_s", "idle_latency_p99_s", "poll_latency_p50_s",
    "store_bytes_per_1k_msgs", "peak_rss_mb_ingest", "peak_rss_mb_idle",
    "drain_msgs_per_s", "drain_baseline_msgs_per_s", "drain_ratio",
    "threading_score", "duplicate_acks", "lost_messages",
)  # fmt: skip

pytestmark = pytest.mark.integration


def test_bench_smoke_run_writes_sane_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--n", "200", "--latency-count", "10", "--skip-scale",
           "--drain-count", "200", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-5000:]}"
    result = json.loads(out.read_text())
    missing = [key for key in KEYS if key not in result]
    assert not missing, missing
    assert result["n"] == 200
    assert result["threading_score"] == 1.0, result["correctness"]["examples"]
    assert result["lost_messages"] == 0
    assert result["duplicate_acks"] == 0
    assert result["correct"] is True
    for key in ("ingest_msgs_per_s", "floor_msgs_per_s", "drain_msgs_per_s", "drain_baseline_msgs_per_s"):
        assert result[key] > 0, key
    for key in ("idle_latency_p50_s", "idle_latency_p99_s", "poll_latency_p50_s"):
        assert result[key] is not None and result[key] >= 0, key
    assert 0 < result["peak_rss_mb_ingest"] < 4096
    assert result["store_bytes_per_1k_msgs"] > 0
    assert "ingest, msg/s" in proc.stdout  # the table was printed

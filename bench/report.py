"""The table a person reads and the JSON a script reads: the same figures, each beside its baseline."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    mailsvc: float | None
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    passed: bool | None = None
    fmt: str = "{:.1f}"

    @property
    def ratio(self) -> float | None:
        if self.mailsvc is None or not self.baseline or math.isnan(self.mailsvc) or math.isnan(self.baseline):
            return None
        return self.mailsvc / self.baseline


def _cell(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def table(rows: list[Row]) -> str:
    head = ("figure", "mailsvc", "baseline", "ratio", "target", "pass?")
    cells = [
        (
            r.figure,
            _cell(r.mailsvc, r.fmt),
            f"{_cell(r.baseline, r.fmt)} {r.baseline_name}".strip() if r.baseline is not None else "",
            _cell(r.ratio, "{:.2f}"),
            r.target,
            {True: "yes", False: "NO", None: ""}[r.passed],
        )
        for r in rows
    ]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(len(head))]
    right = {1, 3}

    def line(values: tuple[str, ...]) -> str:
        return " | ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(c) for c in cells)])


def _clean(value: Any) -> Any:
    """JSON has no NaN: unknown figures are null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)

"""Latency summaries and aligned text tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """Milliseconds: how many samples, median, 99th percentile, worst and mean."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "p50": _finite(self.p50),
            "p99": _finite(self.p99),
            "max": _finite(self.max),
            "mean": _finite(self.mean),
        }


def _finite(value: float) -> float | None:
    """JSON has no NaN: a figure without samples is null."""
    return None if math.isnan(value) else round(value, 4)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted samples, linearly interpolated."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(seconds: Sequence[float]) -> Summary:
    """Summary in milliseconds of samples given in seconds."""
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(ms),
        p50=percentile(ms, 50),
        p99=percentile(ms, 99),
        max=ms[-1],
        mean=sum(ms) / len(ms),
    )


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A titled table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [title, line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)

"""
bench.ceiling's arithmetic: from one record per (target, round, rate) to one row per (target, rate) with the
medians across rounds, their spread, and the ratios that the issue's goals are stated in. Ratios are taken
within a round (target and baseline measured minutes apart, on the same machine state), then the median of
those per-round ratios is reported. Pure functions, no I/O: tests/test_bench_summary.py checks them.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Optional

# The bare twisted.web baseline a target is divided by: the one of its transport (Protobuf http_stream is still
# http_stream on the wire; the baseline has no Protobuf).
BASELINE_SYSTEM = "twisted.web"


def baselineTransport(transport: str) -> str:
    return "http_stream" if transport.startswith("http_stream") else transport


def baselineKey(transport: str) -> str:
    return f"{BASELINE_SYSTEM} {baselineTransport(transport)}"


def median(values: Iterable[float]) -> Optional[float]:
    values = list(values)
    return statistics.median(values) if values else None


def spread(values: Iterable[float]) -> Optional[float]:
    """(max - min) / median, in per cent: how far the rounds disagree. None for fewer than two values."""
    values = list(values)
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    return 100 * (max(values) - min(values)) / middle if middle else None


def ok(record: dict[str, Any]) -> bool:
    """A record counts when it measured something and every delivery arrived."""
    return not record.get("error") and record.get("received", 0) >= record.get("expected", 1) > 0


def summarize(records: list[dict[str, Any]], floors: dict[int, float]) -> list[dict[str, Any]]:
    """
    @param records: one per target, round and rate: C{target} (its name), C{transport}, C{round}, C{rate},
        C{cpu_us} (server CPU per delivery), C{p50_ms}, C{p99_ms}, C{fanout_p50_ms}, C{rss_kib} (per connection),
        C{other_cpus}, C{received}, C{expected}, and C{error} when the run failed.
    @param floors: the raw send floor of each round, µs per send.
    @return: one row per target and rate, in the order targets first appear.
    """
    byKey: dict[tuple[str, int, float], dict[str, Any]] = {}
    order: list[tuple[str, float]] = []
    for record in records:
        key = (record["target"], record["round"], record["rate"])
        byKey[key] = record
        if (record["target"], record["rate"]) not in order:
            order.append((record["target"], record["rate"]))
    rows = []
    for target, rate in order:
        mine = [r for r in records if r["target"] == target and r["rate"] == rate]
        good = [r for r in mine if ok(r)]
        ratios, floorRatios = [], []
        for r in good:
            base = byKey.get((baselineKey(r["transport"]), r["round"], rate))
            if base is not None and ok(base) and base["cpu_us"]:
                ratios.append(r["cpu_us"] / base["cpu_us"])
            floor = floors.get(r["round"])
            if floor:
                floorRatios.append(r["cpu_us"] / floor)
        rows.append(
            {
                "target": target,
                "transport": mine[0]["transport"],
                "rate": rate,
                "rounds": len(mine),
                "failed": len(mine) - len(good),
                "errors": sorted({str(r.get("error") or "deliveries missing") for r in mine if not ok(r)}),
                "cpu_us": median(r["cpu_us"] for r in good),
                "cpu_spread_pct": spread(r["cpu_us"] for r in good),
                "p50_ms": median(r["p50_ms"] for r in good),
                "p99_ms": median(r["p99_ms"] for r in good),
                "fanout_p50_ms": median(r["fanout_p50_ms"] for r in good),
                "rss_kib": median(r["rss_kib"] for r in good),
                "vs_baseline": median(ratios),
                "vs_baseline_spread_pct": spread(ratios),
                "vs_floor": median(floorRatios),
                "other_cpus_max": max((r["other_cpus"] for r in good), default=None),
            }
        )
    return rows


def _num(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (it goes into bench/README.md as printed)."""
    head = [
        "target",
        "pub/s",
        "µs CPU / delivery",
        "spread",
        "p50 / p99 ms",
        "× bare twisted.web",
        "× send floor",
        "KiB / conn",
        "other CPU",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        if row["cpu_us"] is None:
            cells = [row["target"], f"{row['rate']:g}", "failed: " + "; ".join(row["errors"])[:80]]
            cells += [""] * (len(head) - len(cells))
        else:
            failed = f" ({row['failed']} of {row['rounds']} failed)" if row["failed"] else ""
            cells = [
                row["target"] + failed,
                f"{row['rate']:g}",
                _num(row["cpu_us"]),
                "–" if row["cpu_spread_pct"] is None else f"±{row['cpu_spread_pct'] / 2:.0f} %",
                f"{_num(row['p50_ms'])} / {_num(row['p99_ms'])}",
                _num(row["vs_baseline"], 2),
                _num(row["vs_floor"], 2),
                _num(row["rss_kib"]),
                _num(row["other_cpus_max"], 2),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

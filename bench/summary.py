"""The parts of RESULTS.md that compare servers at a glance (standard library only): the
headline table (servers as columns), issue 17's targets, the run-to-run spread and an SVG
chart of server CPU per message, drawn here without any plotting package."""

from __future__ import annotations

import statistics
from html import escape
from pathlib import Path
from typing import Any

Runs = list[dict[str, Any]]

# (scenario, result key, row title, scale): the rows of the headline table.
HEADLINE = [
    ("small", "msgs_per_s", "small, msgs/s", 1),
    ("small", "server_cpu_us_per_msg", "small, server CPU µs/msg", 1),
    ("conn", "msgs_per_s", "conn, msgs/s", 1),
    ("conn", "server_cpu_us_per_msg", "conn, server CPU µs/msg (= per connection)", 1),
    ("large", "mib_per_s", "large, MiB/s", 1),
    ("large", "server_cpu_ms_per_mib", "large, server CPU ms/MiB", 1),
    ("tls", "msgs_per_s", "tls, msgs/s", 1),
    ("tls", "server_cpu_us_per_msg", "tls, server CPU µs/msg", 1),
    ("idle", "kib_per_conn", "idle, KiB/connection", 1),
    ("idle-tls", "kib_per_conn", "idle-tls, KiB/connection", 1),
]

# What the chart draws: server CPU per unit of work, one panel per scenario.
CHART = [
    ("small", "server_cpu_us_per_msg", "small (1 KiB, 20 sessions): server CPU µs per message"),
    ("conn", "server_cpu_us_per_msg", "conn (one message per connection): server CPU µs per message"),
    ("large", "server_cpu_ms_per_mib", "large (1 MiB messages): server CPU ms per MiB"),
    ("tls", "server_cpu_us_per_msg", "tls (STARTTLS, 20 sessions): server CPU µs per message"),
]

COLORS = {
    "smtpgate": "#1f6fb4",
    "smtpgate-uvloop": "#5aa3e0",
    "smtpgate-defaults": "#174f80",
    "smtpgate-defaults-uvloop": "#8cc2ee",
    "smtpgate-pure": "#7a5aa8",
    "aiosmtpd": "#b0b0b0",
    "aiosmtpd-uvloop": "#d0d0d0",
    "node": "#3c9a3c",
    "node-nodelay": "#7cc47c",
    "smtp-sink": "#d08b2c",
}

SHORT = {"server_cpu_us_per_msg": "CPU/msg", "msgs_per_s": "msgs/s", "mib_per_s": "MiB/s", "kib_per_conn": "KiB/conn"}

SPREAD_LIMIT = 0.15  # issue 17: no scenario varies by more than 15 % between runs


def values_of(runs: Runs, scenario: str, server: str, key: str) -> list[float]:
    return [
        float(r["result"][key])
        for r in runs
        if r["scenario"] == scenario and r["server"] == server and r.get("result") and key in r["result"]
    ]


def median_of(runs: Runs, scenario: str, server: str, key: str) -> float | None:
    values = values_of(runs, scenario, server, key)
    return statistics.median(values) if values else None


def spread(values: list[float]) -> float | None:
    """(max − min) / median over the repetitions; None with fewer than two."""
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else None


def paired_ratios(runs: Runs, scenario: str, ours: str, peer: str, key: str) -> list[float]:
    """ours ÷ peer within each repetition that measured both: the two ran minutes apart at
    most, so a machine that drifts between repetitions moves both alike."""
    by_rep: dict[str, dict[int, float]] = {ours: {}, peer: {}}
    for r in runs:
        if r["scenario"] == scenario and r["server"] in by_rep and r.get("result") and key in r["result"]:
            by_rep[r["server"]][r["rep"]] = float(r["result"][key])
    mine, theirs = by_rep[ours], by_rep[peer]
    return [mine[rep] / theirs[rep] for rep in sorted(mine.keys() & theirs.keys()) if theirs[rep]]


def number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def headline(runs: Runs, servers: list[Any]) -> list[str]:
    """Servers as columns, the main figures as rows (medians)."""
    present = [s for s in servers if any(r["server"] == s.name and r.get("result") for r in runs)]
    rows = []
    for scenario, key, title, scale in HEADLINE:
        cells = [median_of(runs, scenario, s.name, key) for s in present]
        if all(c is None for c in cells):
            continue
        rows.append(f"| {title} | " + " | ".join("–" if c is None else number(c * scale) for c in cells) + " |")
    if not rows:
        return []
    return [
        "| | " + " | ".join(s.name for s in present) + " |",
        "| --- " * (len(present) + 1) + "|",
        *rows,
    ]


def spread_table(runs: Runs, scenarios: list[Any], servers: list[Any]) -> list[str]:
    """Per scenario and server: relative spread of server CPU per unit and of the main figure."""
    present = [s for s in servers if any(r["server"] == s.name and r.get("result") for r in runs)]
    rows = []
    for scenario in scenarios:
        cpu_key = {"send": "server_cpu_us_per_msg", "hold": "server_cpu_us_per_conn"}[scenario.kind]
        cells = []
        for server in present:
            cpu = spread(values_of(runs, scenario.name, server.name, cpu_key))
            main = spread(values_of(runs, scenario.name, server.name, scenario.metric))
            if cpu is None and main is None:
                cells.append("–")
                continue
            text = " / ".join("–" if x is None else f"{x * 100:.0f}%" for x in (cpu, main))
            worst = max(x for x in (cpu, main) if x is not None)
            cells.append(f"**{text}**" if worst > SPREAD_LIMIT else text)
        if any(c != "–" for c in cells):
            rows.append(f"| {scenario.name} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "| scenario | " + " | ".join(s.name for s in present) + " |",
        "| --- " * (len(present) + 1) + "|",
        *rows,
    ]


def issue17_targets(runs: Runs, drifts: dict[str, tuple[float, str]] | None = None) -> list[tuple[str, str, str, str]]:
    """Issue 17's targets for each smtpgate variant present: (server, target, measured, met).
    ``drifts``: per server, the worst move of a median from another run of the same build and
    where (compare.worst_drifts), judged against the same 15 % as the spread."""
    rows: list[tuple[str, str, str, str]] = []

    def med(scenario: str, server: str, key: str) -> float | None:
        return median_of(runs, scenario, server, key)

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("yes" if ok else "**no**")

    ours_all = ("smtpgate", "smtpgate-defaults", "smtpgate-uvloop", "smtpgate-defaults-uvloop")
    for ours in ours_all:
        if not any(r["server"] == ours and r.get("result") for r in runs):
            continue
        uv = ours.endswith("uvloop")
        factor = 0.75 if uv else 1.0
        for scenario in ("small", "tls"):
            mine = med(scenario, ours, "server_cpu_us_per_msg")
            for peer in ("node", "node-nodelay"):
                theirs = med(scenario, peer, "server_cpu_us_per_msg")
                if mine is None or theirs is None:
                    continue
                measured = f"{mine:.0f} vs {theirs:.0f} µs ({mine / theirs:.2f}×)"
                paired = paired_ratios(runs, scenario, ours, peer, "server_cpu_us_per_msg")
                if len(paired) > 1:  # shown beside the verdict, which is on the medians
                    measured += f"; paired {statistics.median(paired):.2f}× ({min(paired):.2f}–{max(paired):.2f})"
                rows.append((ours, f"{scenario}: server CPU/msg ≤ {factor:g}× {peer}", measured,
                             verdict(mine <= factor * theirs)))  # fmt: skip
            mine, theirs = med(scenario, ours, "msgs_per_s"), med(scenario, "node-nodelay", "msgs_per_s")
            if mine is not None and theirs:
                rows.append((ours, f"{scenario}: msgs/s ≥ node-nodelay", f"{mine / theirs:.2f}×",
                             verdict(mine >= theirs)))  # fmt: skip
        peer = "aiosmtpd-uvloop" if uv else "aiosmtpd"
        mine, theirs = med("conn", ours, "msgs_per_s"), med("conn", peer, "msgs_per_s")
        if mine is not None and theirs:
            rows.append((ours, f"conn: msgs/s ≥ 3× {peer}", f"{mine / theirs:.2f}×", verdict(mine >= 3 * theirs)))
        theirs = med("conn", "node-nodelay", "msgs_per_s")
        if mine is not None and theirs:
            rows.append((ours, "conn: msgs/s ≥ 1.0× node-nodelay", f"{mine / theirs:.2f}×", verdict(mine >= theirs)))
        mine, theirs = med("large", ours, "server_cpu_ms_per_mib"), med("large", "node", "server_cpu_ms_per_mib")
        if mine is not None and theirs:
            rows.append((ours, "large: server CPU/MiB ≤ node", f"{mine:.2f} vs {theirs:.2f} ms",
                         verdict(mine <= theirs)))  # fmt: skip
        for scenario in ("idle", "idle-tls"):
            mine, theirs = med(scenario, ours, "kib_per_conn"), med(scenario, "node", "kib_per_conn")
            if mine is not None and theirs is not None:
                rows.append((ours, f"{scenario}: KiB/connection ≤ node", f"{mine:.1f} vs {theirs:.1f} KiB",
                             verdict(mine <= theirs)))  # fmt: skip
        worst, where = 0.0, ""
        for scenario in ("small", "conn", "large", "tls", "idle", "idle-tls"):
            for key in ("server_cpu_us_per_msg", "msgs_per_s", "mib_per_s", "kib_per_conn"):
                value = spread(values_of(runs, scenario, ours, key))
                if value is not None and value > worst:
                    worst, where = value, f"{scenario} {SHORT[key]}"
        if where:
            rows.append((ours, "run-to-run spread ≤ 15 % in every scenario", f"{worst * 100:.0f}% (worst: {where})",
                         verdict(worst <= SPREAD_LIMIT)))  # fmt: skip
        moved = (drifts or {}).get(ours)
        if moved:
            rows.append((ours, "medians ≤ 15 % apart between two runs, every scenario",
                         f"{moved[0] * 100:.0f}% (worst: {moved[1]})", verdict(moved[0] <= SPREAD_LIMIT)))  # fmt: skip
        worst, where = 0.0, ""
        for scenario in PAIRED_SCENARIOS:
            value = spread(paired_ratios(runs, scenario, ours, "node-nodelay", "server_cpu_us_per_msg"))
            if value is not None and value > worst:
                worst, where = value, scenario
        if where:
            rows.append((ours, "(no target) spread of the paired CPU ratio to node-nodelay",
                         f"{worst * 100:.0f}% (worst: {where})", "–"))  # fmt: skip
    smtp_sink = med("small", "smtp-sink", "server_cpu_us_per_msg")
    mine = med("small", "smtpgate", "server_cpu_us_per_msg")
    if smtp_sink and mine:
        rows.append(("smtpgate", "small: distance to Postfix smtp-sink (C), CPU/msg (no target)",
                     f"{mine:.0f} vs {smtp_sink:.0f} µs ({mine / smtp_sink:.1f}×)", "–"))  # fmt: skip
    return rows


PAIRED_SCENARIOS = ("small", "conn", "tls")
PAIRED_PEERS = ("node", "node-nodelay", "aiosmtpd")


def paired_table(runs: Runs, servers: list[Any]) -> list[str]:
    """Per smtpgate variant and scenario: server CPU per message ÷ each peer's, repetition by
    repetition, as median (min–max) and spread."""
    ours = [s.name for s in servers if s.name.startswith("smtpgate")]
    peers = [p for p in PAIRED_PEERS if any(r["server"] == p and r.get("result") for r in runs)]
    rows = []
    for scenario in PAIRED_SCENARIOS:
        for name in ours:
            cells = []
            for peer in peers:
                ratios = paired_ratios(runs, scenario, name, peer, "server_cpu_us_per_msg")
                if not ratios:
                    cells.append("–")
                    continue
                text = f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                width = spread(ratios)
                cells.append(text + ("" if width is None else f", {width * 100:.0f}%"))
            if any(c != "–" for c in cells):
                rows.append(f"| {scenario} | {name} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["| scenario | server | " + " | ".join(f"÷ {p}" for p in peers) + " |",
            "| --- " * (len(peers) + 2) + "|", *rows]  # fmt: skip


# ----------------------------------------------------------------------------- chart

FONT = "font-family:DejaVu Sans,Helvetica,Arial,sans-serif"


def svg_chart(runs: Runs, servers: list[Any], path: Path) -> bool:
    """Horizontal bars of server CPU per unit, one panel per scenario, median with a min–max
    whisker per server. Returns False (and writes nothing) when there is nothing to draw."""
    width, label_w, value_w, bar_h, gap = 900, 210, 80, 18, 6
    plot_w = width - label_w - value_w - 20
    parts: list[str] = []
    y = 40
    for scenario, key, title in CHART:
        bars = []
        for server in servers:
            values = values_of(runs, scenario, server.name, key)
            if values:
                bars.append((server.name, statistics.median(values), min(values), max(values)))
        if not bars:
            continue
        top = max(b[3] for b in bars) * 1.05 or 1.0
        parts.append(f'<text x="10" y="{y}" style="{FONT};font-size:14px;font-weight:bold">{escape(title)}</text>')
        y += 10
        for name, mid, low, high in bars:
            color = COLORS.get(name, "#888888")
            w = plot_w * mid / top
            cy = y + bar_h / 2
            parts.append(f'<text x="{label_w - 8}" y="{cy + 4:.1f}" text-anchor="end" '
                         f'style="{FONT};font-size:12px">{escape(name)}</text>')  # fmt: skip
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            if high > low:
                x0, x1 = label_w + plot_w * low / top, label_w + plot_w * high / top
                parts.append(f'<line x1="{x0:.1f}" y1="{cy:.1f}" x2="{x1:.1f}" y2="{cy:.1f}" stroke="#222" '
                             'stroke-width="1.5"/>')  # fmt: skip
                for x in (x0, x1):
                    parts.append(f'<line x1="{x:.1f}" y1="{cy - 4:.1f}" x2="{x:.1f}" y2="{cy + 4:.1f}" '
                                 'stroke="#222" stroke-width="1.5"/>')  # fmt: skip
            tail = label_w + plot_w * max(mid, high) / top + 6
            parts.append(f'<text x="{tail:.1f}" y="{cy + 4:.1f}" style="{FONT};font-size:12px">'
                         f"{number(mid)}</text>")  # fmt: skip
            y += bar_h + gap
        y += 28
    if not parts:
        return False
    height = y
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" style="{FONT};font-size:13px;fill:#444">Server CPU per unit of work, '
        "median of the repetitions (line: min–max). Lower is better.</text>",
    ]
    path.write_text("\n".join([*head, *parts, "</svg>"]) + "\n")
    return True

"""The markdown report of a benchmark run (bench/RESULTS.md): the tables of every scenario,
the headline, the targets of issue 17, the spread and, given another run, the drift between
the two. Written by run.py after a run, or again from its results.json (`--render`)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import compare
import summary
from lineup import Scenario, Server

MIB = 1024 * 1024
CHART_FILE = "cpu-per-message.svg"
MAPPED_READ_FAULTS = 4.0  # page faults per message of asyncio's "mmap per read" mode (8 in small)


def med(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


fmt = summary.number  # (one way of writing a figure, in every table)


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    mid, low, high = med(values)
    if len(values) == 1 or low == high:
        return fmt(mid)
    return f"{fmt(mid)} ({fmt(low)}–{fmt(high)})"


SEND_COLUMNS = [
    ("msgs/s", "msgs_per_s", 1),
    ("MiB/s", "mib_per_s", 1),
    ("server CPU µs/msg", "server_cpu_us_per_msg", 1),
    ("server CPU %", "server_cpu_pct", 1),
    ("server page faults/msg", "server_faults_per_msg", 1),
    ("client CPU µs/msg", "client_cpu_us_per_msg", 1),
    ("peak RSS MiB", "peak_rss_kib", 1 / 1024),
    ("host busy %", "host_busy_pct", 1),
]
HOLD_COLUMNS = [
    ("KiB/conn", "kib_per_conn", 1),
    ("RSS before MiB", "rss_before_kib", 1 / 1024),
    ("RSS held MiB", "rss_after_kib", 1 / 1024),
    ("peak RSS MiB", "peak_rss_kib", 1 / 1024),
    ("server CPU µs/conn", "server_cpu_us_per_conn", 1),
    ("open s", "open_seconds", 1),
    ("host busy %", "host_busy_pct", 1),
]
METRIC_TITLES = {"msgs_per_s": "msgs/s", "mib_per_s": "MiB/s", "kib_per_conn": "KiB per connection (lower is better)"}


def values_of(runs: list[dict[str, Any]], scenario: str, server: str, key: str, scale: float = 1) -> list[float]:
    return [value * scale for value in summary.values_of(runs, scenario, server, key)]


def write_report(meta: dict[str, Any], runs: list[dict[str, Any]], scenarios: list[Scenario],
                 servers: list[Server], path: Path, other: dict[str, Any] | None = None) -> None:  # fmt: skip
    out: list[str] = []
    add = out.append
    add("# smtpgate benchmark results\n")
    add(f"Run {meta['date']} with `{meta['command']}`; {meta['reps']} repetition(s) per server and scenario,")
    add("each a fresh server process. In the send scenarios every repetition's servers run side by")
    add("side: each is warmed up by one round of the load, then the scenario's rounds go to all of")
    add("them in turn (A1 B1 A2 B2, B2 A2 B1 A1, ...), and a repetition's figure is the median over")
    add("its rounds: the spread between repetitions is between server processes, and a drift of the")
    add("machine during the run falls on all of them alike (compare two runs to see the drift).")
    add("Cells are **median (min–max)** over the repetitions.\n")
    if meta.get("pin", "none") != "none":
        where = "on CPU 0" if meta["pin"] == "same" else "server on CPU 0, load generator on CPU 1"
        add(f"Pinned with taskset (`--pin {meta['pin']}`): {where}.\n")
    if meta.get("note"):
        add(f"> {meta['note']}\n")
    add("## Machine and versions\n")
    add("| | |\n| --- | --- |")
    for key, value in meta["machine"].items():
        add(f"| {key} | {value} |")
    for key, value in meta["versions"].items():
        add(f"| {key} | {value} |")
    add("")
    add("## At a glance\n")
    add("Medians; CPU is user + system time of the server process per message (per MiB in `large`),")
    add("the figure that depends least on how busy the machine was. `smtpgate-defaults` is the library")
    add("with every option at its default (only `on_data` set); `smtpgate` is the tuned bench sink;")
    add("`smtpgate-pure` is `smtpgate-defaults` without the compiled modules (an editable install).\n")
    out.extend(summary.headline(runs, servers))
    add("")
    chart = path.parent / CHART_FILE
    if summary.svg_chart(runs, servers, chart):
        add(f"![Server CPU per message, per scenario and server]({CHART_FILE})\n")
    add("## Targets of issue 17\n")
    add("| server | target | measured | met |\n| --- | --- | --- | --- |")
    for row in summary.issue17_targets(runs, compare.worst_drifts(runs, other["runs"]) if other else None):
        add("| " + " | ".join(row) + " |")
    add("")
    table = summary.paired_table(runs, servers)
    if table:
        add("## Paired ratios\n")
        add("Server CPU per message of each smtpgate variant ÷ a peer's, taken within each repetition")
        add("(the two took turns round by round), then median (min–max) and spread over the repetitions.")
        add("A machine that drifts moves both sides of a pair alike, so a wide spread here means noise")
        add("from one round to the next rather than drift. The targets above are judged on the")
        add("medians; the paired median is shown beside them as a second estimate.\n")
        out.extend(table)
        add("")
    table = summary.spread_table(runs, scenarios, servers)
    if table:
        add("## Run-to-run spread\n")
        add("(max − min) / median over the repetitions of each cell: server CPU per message (per")
        add("connection in the idle scenarios) / the scenario's main figure (msgs/s, MiB/s or KiB per")
        add("connection). Bold: above the 15 % of issue 17. Each repetition is a fresh server process;")
        add("in the send scenarios its figure is already the median over its rounds.\n")
        out.extend(table)
        add("")
    table = compare.drift_table(runs, other["runs"], [s.name for s in servers]) if other else []
    if other and table:
        add("## Between two runs\n")
        build = other["meta"]["versions"].get("smtpgate", "?")
        same = "the same build" if compare.same_build(meta, other["meta"]) else f"smtpgate {build}"
        command = other["meta"]["command"].split(" --note ", 1)[0]
        add(f"Medians of this run ({meta['date']}) → those of another run of {same}")
        add(f"({other['meta']['date']}, `{command}`), and how far they moved: |a − b| / their mean,")
        add("the same measure as the spread above. This holds the drift of the machine between the")
        add("runs as well as the spread between server processes. Bold: above 15 %.\n")
        out.extend(table)
        add("")
    for scenario in scenarios:
        present = [s for s in servers if any(r["scenario"] == scenario.name and r["server"] == s.name for r in runs)]
        if not present:
            continue
        add(f"## {scenario.name}: {scenario.title}\n")
        if scenario.kind == "send":
            total = scenario.messages * scenario.rounds
            size = "1 MiB" if scenario.length == MIB else f"{scenario.length} B"
            add(
                f"{total:,} messages of {size} payload per repetition in {scenario.rounds} round(s) of "
                f"{scenario.messages:,} (after one round of warm-up), {scenario.sessions} parallel sessions.\n"
            )
            columns = SEND_COLUMNS
            if scenario.length >= MIB:
                columns = [*SEND_COLUMNS[:3], ("server CPU ms/MiB", "server_cpu_ms_per_mib", 1), *SEND_COLUMNS[3:]]
        else:
            add(f"{scenario.hold:,} connections held per run; KiB/conn = (RSS held − RSS before) / connections.\n")
            columns = HOLD_COLUMNS
        add("| server | " + " | ".join(c[0] for c in columns) + " | runs |")
        add("| --- " * (len(columns) + 2) + "|")
        for server in present:
            cells = [cell(values_of(runs, scenario.name, server.name, key, scale)) for _, key, scale in columns]
            ok = sum(1 for r in runs if r["scenario"] == scenario.name and r["server"] == server.name and r["result"])
            failed = [r["error"] for r in runs if r["scenario"] == scenario.name and r["server"] == server.name
                      and not r["result"]]  # fmt: skip
            runs_text = f"{ok}" + (f" ({len(failed)} failed)" if failed else "")
            retried = sum(values_of(runs, scenario.name, server.name, "client_errors"))
            if retried:
                runs_text += f", {retried:.0f} sessions retried"

            add(f"| {server.label} | " + " | ".join(cells) + f" | {runs_text} |")
        ceilings = [r for r in runs if r["scenario"] == scenario.name + "-ceiling" and r["result"]]
        if ceilings:
            add("")
            add("The *ceiling* rows drive smtp-sink (far faster than any load generator here) without TLS:")
            add("tlsload's own limit next to smtp-source's. A server row near the tlsload ceiling is")
            add("limited by the load generator, not by the server. (smtp-sink has no STARTTLS, so there is no")
            add("TLS ceiling row; the client CPU column shows what TLS costs the generator.)")
            add("")
            add("| load generator | " + " | ".join(c[0] for c in columns) + " | runs |")
            add("| --- " * (len(columns) + 2) + "|")
        for extra in ceilings:
            res = extra["result"]
            add(f"| *{extra['label']}* | " + " | ".join(
                fmt(res[key] * scale) if key in res else "–" for _, key, scale in columns) + " | 1 |")  # fmt: skip
        add("")
        errors = {(r["server"], r["error"]) for r in runs if r["scenario"] == scenario.name and not r["result"]}
        for server_name, error in sorted(errors):
            add(f"- {server_name} failed: `{error}`")
        if errors:
            add("")
        mapped = []
        for server in present:
            faults = values_of(runs, scenario.name, server.name, "server_faults_per_msg")
            many = sum(1 for f in faults if f >= MAPPED_READ_FAULTS)
            if server.name.startswith(("smtpgate", "aiosmtpd")) and many and scenario.length < MIB:
                mapped.append(f"{server.name} {many} of {len(faults)}")
        if mapped:
            add("Repetitions in which the server mapped fresh memory for every read (≥ 4 page faults per")
            add('message; profile.md, "Why small is bimodal"): ' + ", ".join(mapped) + ".\n")
        metric = scenario.metric
        medians = {s.name: summary.median_of(runs, scenario.name, s.name, metric) for s in present}
        shown = [s for s in present if medians[s.name]]
        if len(shown) > 1:
            add(f"Ratio of median {METRIC_TITLES[metric]}, row ÷ column:\n")
            add("| | " + " | ".join(s.name for s in shown) + " |")
            add("| --- " * (len(shown) + 1) + "|")
            for row in shown:
                cells = [f"{medians[row.name] / medians[col.name]:.2f}×" for col in shown]  # type: ignore[operator]
                add(f"| {row.name} | " + " | ".join(cells) + " |")
            add("")
    path.write_text("\n".join(out) + "\n")

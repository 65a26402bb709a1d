"""Two runs of the bench side by side: how far each server's medians moved from one whole
run to the other (standard library only).

Within a run, the spread between repetitions is between server processes that took turns
(summary.spread_table). Between two runs of the same build, the difference of the medians
also holds whatever the machine did in the minutes between them. Both count for issue 17's
"no scenario varies by more than 15 % between runs".

    bench/.venv/bin/python bench/compare.py bench/results.json bench/pinned/results.json

prints the table; `bench/run --compare OTHER/results.json` (also with `--render`) puts it
into RESULTS.md and judges the target on it as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from summary import SHORT, SPREAD_LIMIT, Runs, median_of, number

# The figures compared: server CPU per unit of work and the scenario's main figure.
KEYS = {
    "small": ("server_cpu_us_per_msg", "msgs_per_s"),
    "conn": ("server_cpu_us_per_msg", "msgs_per_s"),
    "large": ("server_cpu_ms_per_mib", "mib_per_s"),
    "tls": ("server_cpu_us_per_msg", "msgs_per_s"),
    "idle": ("kib_per_conn",),
    "idle-tls": ("kib_per_conn",),
}
SHORT_ALL = {**SHORT, "server_cpu_ms_per_mib": "CPU/MiB"}


def drift(first: float | None, second: float | None) -> float | None:
    """|first − second| / their median (the mean of two): the same measure as the spread."""
    if first is None or second is None or first + second == 0:
        return None
    return abs(first - second) / ((first + second) / 2)


def servers_in(runs: Runs) -> list[str]:
    """Server names in the order the run measured them first."""
    return list(dict.fromkeys(r["server"] for r in runs if r.get("result")))


def drifts(this: Runs, other: Runs, server: str) -> list[tuple[str, str, float, float, float]]:
    """(scenario, key, this median, other median, drift) for every figure both runs have."""
    found = []
    for scenario, keys in KEYS.items():
        for key in keys:
            mine, theirs = median_of(this, scenario, server, key), median_of(other, scenario, server, key)
            moved = drift(mine, theirs)
            if moved is not None and mine is not None and theirs is not None:
                found.append((scenario, key, mine, theirs, moved))
    return found


def worst_drifts(this: Runs, other: Runs) -> dict[str, tuple[float, str]]:
    """Per server in both runs: the largest drift of its figures between them, and where."""
    worst = {}
    for server in servers_in(this):
        found = drifts(this, other, server)
        if found:
            scenario, key, _, _, moved = max(found, key=lambda item: item[4])
            worst[server] = (moved, f"{scenario} {SHORT_ALL[key]}")
    return worst


def same_build(this: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two runs' ``meta`` name the same build: the hash of the sources where both
    recorded one, else the same version string (which holds the git revision)."""
    mine, theirs = this.get("sources", "?"), other.get("sources", "?")
    if "?" not in (mine, theirs):
        return bool(mine == theirs)
    return bool(this["versions"].get("smtpgate") == other["versions"].get("smtpgate"))


def drift_table(this: Runs, other: Runs, order: list[str] | None = None) -> list[str]:
    """Scenarios as rows, servers as columns (in ``order`` if given); a cell is
    'this → other, drift' per figure."""
    theirs = set(servers_in(other))
    names = [name for name in servers_in(this) if name in theirs]
    if order:
        names.sort(key=lambda name: order.index(name) if name in order else len(order))
    found = {
        (name, scenario, key): (a, b, moved)
        for name in names
        for scenario, key, a, b, moved in drifts(this, other, name)
    }
    rows = []
    for scenario, keys in KEYS.items():
        cells = []
        for name in names:
            parts = []
            for key in keys:
                if (name, scenario, key) not in found:
                    continue
                mine, their, moved = found[name, scenario, key]
                text = f"{number(mine)} → {number(their)}, {moved * 100:.0f}%"
                parts.append(f"**{text}**" if moved > SPREAD_LIMIT else text)
            cells.append("<br>".join(parts) or "–")
        if any(c != "–" for c in cells):
            figures = " / ".join(SHORT_ALL[key] for key in keys)
            rows.append(f"| {scenario} ({figures}) | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["| scenario | " + " | ".join(names) + " |", "| --- " * (len(names) + 1) + "|", *rows]


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("this", type=Path, help="results.json of one run")
    parser.add_argument("other", type=Path, help="results.json of the run to compare it with")
    args = parser.parse_args(argv)
    this, other = load(args.this), load(args.other)
    print(f"{args.this}: {this['meta']['date']}; {args.other}: {other['meta']['date']}\n")
    print("\n".join(drift_table(this["runs"], other["runs"])))
    print()
    for name, (moved, where) in worst_drifts(this["runs"], other["runs"]).items():
        print(f"{name}: worst drift {moved * 100:.0f}% ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

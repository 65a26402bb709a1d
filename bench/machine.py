"""What a benchmark run records of the machine and the versions it ran."""

from __future__ import annotations

import json
import os
import platform
import ssl
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=BENCH).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) // 1024
    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": model,
        "memory": f"{memory:,} MiB",
        "kernel": platform.release(),
        "OS": command_output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def caller_path(path: str) -> Path:
    """A path given on the command line, relative to where ``bench/run`` was called from
    (the wrapper changes into bench/ and says where that was in ``BENCH_CALLER_CWD``)."""
    return Path(os.environ.get("BENCH_CALLER_CWD", ".")) / path


def smtpgate_build() -> str:
    """Whether the installed smtpgate (every variant but smtpgate-pure) runs compiled."""
    try:
        from smtpgate.compiled import is_compiled
    except ImportError:
        return "build unknown"
    return "compiled with mypyc" if is_compiled() else "pure Python"


def versions() -> dict[str, str]:
    commit = command_output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    smtp_server = "?"
    try:
        smtp_server = json.loads((BENCH / "node/node_modules/smtp-server/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        pass
    return {
        "Python": platform.python_version(),
        "smtpgate": f"{package_version('smtpgate')} (git {commit}), {smtpgate_build()}",
        "uvloop": package_version("uvloop"),
        "aiosmtpd": package_version("aiosmtpd"),
        "Node": command_output(["node", "--version"]),
        "smtp-server (npm)": smtp_server,
        "Postfix (smtp-source, smtp-sink)": command_output(["dpkg-query", "-W", "-f", "${Version}", "postfix"]),
        "OpenSSL (Python)": ssl.OPENSSL_VERSION,
    }

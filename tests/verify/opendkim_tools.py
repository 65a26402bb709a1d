"""OpenDKIM as the independent signer and verifier of the DKIM tests.

``opendkim -t FILE`` runs a message through the filter in test mode: with ``Mode s`` it
signs (the added DKIM-Signature appears in the ``-vv`` output), with ``Mode v`` it verifies
and prints the Authentication-Results it would add. Its resolver is libunbound, pointed at
the tests' Knot server by an unbound configuration file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
GENKEY = shutil.which("opendkim-genkey") or "/usr/sbin/opendkim-genkey"


def available() -> bool:
    return Path(OPENDKIM).exists() and Path(GENKEY).exists()


def genkey(directory: Path, domain: str, selector: str, bits: int = 1024) -> tuple[Path, str]:
    """(private key path, zone-file TXT line) from ``opendkim-genkey``."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [GENKEY, "-b", str(bits), "-d", domain, "-s", selector, "-D", str(directory)],
        check=True,
        timeout=60,
    )
    text = (directory / f"{selector}.txt").read_text()
    line = text.split(" ; ", 1)[0]  # drop the trailing comment
    return directory / f"{selector}.private", line


def _headers_added(output: str) -> list[tuple[str, str]]:
    found = re.findall(r"### INSHEADER: idx=\d+ hname='([^']+)' hvalue='(.*?)'\n", output, re.DOTALL)
    return [(name, value) for name, value in found]


class OpenDKIM:
    """Sign or verify with ``opendkim -t`` (a config per use, in ``directory``)."""

    def __init__(self, directory: Path, dns_port: int) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.unbound = directory / "unbound.conf"
        self.unbound.write_text(
            "server:\n"
            "    do-not-query-localhost: no\n"
            '    module-config: "iterator"\n'
            '    local-zone: "test." nodefault\n'
            "    use-syslog: no\n"
            "forward-zone:\n"
            '    name: "."\n'
            f"    forward-addr: 127.0.0.1@{dns_port}\n"
        )
        self._count = 0
        self.last_output = ""

    def _run(self, config: str, message: bytes) -> str:
        self._count += 1
        conf = self.directory / f"opendkim-{self._count}.conf"
        conf.write_text(config + "Syslog no\nRequireSafeKeys no\n")
        path = self.directory / f"message-{self._count}.eml"
        path.write_bytes(message)
        done = subprocess.run(
            [OPENDKIM, "-x", str(conf), "-vv", "-t", str(path)], capture_output=True, text=True, timeout=60
        )
        self.last_output = done.stdout + done.stderr
        return self.last_output

    def sign(
        self,
        message: bytes,
        domain: str,
        selector: str,
        key: Path,
        *,
        canonicalization: str = "relaxed/simple",
        ttl: int | None = None,
    ) -> bytes:
        """The message with OpenDKIM's DKIM-Signature on top."""
        self._count += 1
        keytable = self.directory / f"keytable-{self._count}"
        keytable.write_text(f"signer {domain}:{selector}:{key}\n")
        signing = self.directory / f"signingtable-{self._count}"
        signing.write_text("* signer\n")
        config = f"Mode s\nKeyTable {keytable}\nSigningTable refile:{signing}\nCanonicalization {canonicalization}\n"
        if ttl is not None:
            config += f"SignatureTTL {ttl}\n"
        output = self._run(config, message)
        added = [value for name, value in _headers_added(output) if name == "DKIM-Signature"]
        if len(added) != 1:
            raise RuntimeError(f"opendkim did not sign: {output}")
        value = added[0].replace("\r\n", "\n").replace("\n", "\r\n")
        return b"DKIM-Signature: " + value.encode() + b"\r\n" + message

    def verify(self, message: bytes) -> dict[str, str]:
        """header.b (first 8 characters) → OpenDKIM's dkim= result, for every signature."""
        output = self._run(
            f"Mode v\nResolverConfiguration {self.unbound}\nClockDrift 1\n"
            "AlwaysAddARHeader yes\nMaximumSignaturesToVerify 10\n",
            message,
        )
        results: dict[str, str] = {}
        for name, value in _headers_added(output):
            if name != "Authentication-Results":
                continue
            without_comments = re.sub(r"\([^)]*\)", "", value)
            for entry in without_comments.split(";")[1:]:
                match = re.search(r"dkim=(\w+)", entry)
                b_tag = re.search(r"header\.b=\"?([^\s;\"]+)", entry)
                if match and b_tag:
                    results[b_tag.group(1)[:8]] = match.group(1)
        return results

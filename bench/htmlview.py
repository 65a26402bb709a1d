"""How long the web UI's HTML rewrite takes: ordinary newsletters and hostile markup.

    .venv/bin/python bench/htmlview.py            # sizes up to 4 MB
    .venv/bin/python bench/htmlview.py --quick    # small sizes, to check it runs

For each input, the seconds `smtpgate.inbox.htmlview.prepare_html` takes (best of
``--reps``) and the rate in MB/s; for the hostile inputs also Python's ``html.parser``
on a small size, to show why the rewrite has its own tokenizer (``html.parser`` is
quadratic there). Standard library only; nothing leaves the process.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from html.parser import HTMLParser

from smtpgate.inbox.htmlview import prepare_html

NEWSLETTER_ROW = (
    '<tr><td style="padding:8px;background:url(https://cdn.example.test/bg.png)">'
    '<img src="cid:logo@example.test" width="40" alt="logo"> Spring sale &amp; more '
    '<a href="https://shop.example.test/item?id=42" style="color:#0f766e">See it</a></td></tr>\n'
)
HOSTILE = {
    "unclosed comments": "<!--",
    "unclosed tags across lines": "<a\n",
    "unclosed quoted attributes": '<a href="',
    "end tags": "</a",
}


def best_of(reps: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def part_url(content_id: str) -> str:
    return f"../api/v1/message/M/part/{content_id}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sizes = [64 * 1024, 256 * 1024] if args.quick else [256 * 1024, 1024 * 1024, 4 * 1024 * 1024]
    parser_size = 8 * 1024 if args.quick else 32 * 1024

    print(f"{'input':32} {'size':>8} {'seconds':>9} {'MB/s':>7}")
    for size in sizes:
        html = NEWSLETTER_ROW * (size // len(NEWSLETTER_ROW))
        seconds = best_of(args.reps, lambda html=html: prepare_html(html, part_url))
        print(f"{'newsletter rows':32} {size // 1024:>6} K {seconds:9.3f} {len(html) / seconds / 1e6:7.1f}")
    for name, unit in HOSTILE.items():
        html = unit * (sizes[-1] // len(unit))
        seconds = best_of(args.reps, lambda html=html: prepare_html(html, part_url))
        print(f"{name:32} {sizes[-1] // 1024:>6} K {seconds:9.3f} {len(html) / seconds / 1e6:7.1f}")
    print(f"\nhtml.parser on the hostile inputs, {parser_size // 1024} K and {2 * parser_size // 1024} K:")
    for name, unit in HOSTILE.items():
        row = []
        for size in (parser_size, 2 * parser_size):
            html = unit * (size // len(unit))

            def parse(html: str = html) -> None:
                reader = HTMLParser()
                try:
                    reader.feed(html)
                    reader.close()
                except AssertionError:
                    pass

            row.append(best_of(1, parse))
        print(f"{name:32} {row[0]:8.3f} s {row[1]:8.3f} s  (x{row[1] / max(row[0], 1e-9):.1f} for twice the size)")


if __name__ == "__main__":
    main()

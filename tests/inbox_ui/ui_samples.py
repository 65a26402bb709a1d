"""Messages for the browser tests and the screenshots: realistic, built with the standard library."""

from __future__ import annotations

import struct
import zlib
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def png(width: int, height: int, start: tuple[int, int, int], end: tuple[int, int, int]) -> bytes:
    """A diagonal gradient as PNG bytes."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            t = (x / max(width - 1, 1) + y / max(height - 1, 1)) / 2
            row += bytes(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def _message(sender: str, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain="example.test")
    return message


def plain(
    subject: str, to: str = "dev@example.test", sender: str = "Ada Lovelace <ada@example.test>", text: str = ""
) -> bytes:
    message = _message(sender, to, subject)
    message.set_content(text or f"{subject}\n\nThis is a plain text message.\n")
    return message.as_bytes()


def html(subject: str, body: str, to: str = "dev@example.test", sender: str = "Shop <news@shop.example.test>") -> bytes:
    message = _message(sender, to, subject)
    message.set_content("This message is best read as HTML.\n")
    message.add_alternative(body, subtype="html")
    return message.as_bytes()


def newsletter(to: str = "dev@example.test") -> bytes:
    """An HTML mail with an inline (cid:) logo, a PDF attachment and authentication results."""
    message = _message("Northwind Updates <updates@northwind.example.test>", to, "Your March report is ready")
    message["Authentication-Results"] = (
        "mx.test; spf=pass smtp.mailfrom=northwind.example.test; dkim=pass header.d=northwind.example.test; "
        "dmarc=pass header.from=northwind.example.test"
    )
    # Further down: one that came with the message (anyone can write those); not shown as a verdict.
    message["Authentication-Results"] = "relay.example.test; arc=pass; bimi=pass"
    message.set_content(
        "Hi Sam,\n\nYour March report is ready: 1,284 orders (up 12%), 97.8% delivered on time.\n\n"
        "Open the dashboard: https://northwind.example.test/reports/march\n\n— The Northwind team\n"
    )
    logo_cid = make_msgid(domain="northwind.example.test")
    card = "border-radius:8px;padding:14px;text-align:center"
    figure = "font-size:24px;font-weight:bold"
    caption = '<div style="color:#6b7280;font-size:13px">'
    button = "display:inline-block;background:#0f766e;color:#fff;text-decoration:none;padding:10px 18px"
    message.add_alternative(
        f"""<!doctype html><html>
<body style="margin:0;background:#f3f4f6;font-family:Helvetica,Arial,sans-serif">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0">
<tr><td align="center" style="padding:28px 12px">
<table role="presentation" width="560" cellpadding="0" cellspacing="0"
       style="background:#ffffff;border-radius:12px;overflow:hidden">
<tr><td style="background:#0f766e;padding:22px 28px;color:#fff">
<img src="cid:{logo_cid[1:-1]}" width="44" height="44" alt="Northwind"
     style="border-radius:10px;vertical-align:middle">
<span style="font-size:20px;font-weight:bold;vertical-align:middle;margin-left:12px">Northwind</span></td></tr>
<tr><td style="padding:28px;color:#111827;font-size:15px;line-height:1.55">
<h1 style="font-size:22px;margin:0 0 12px">Your March report is ready</h1>
<p>Hi Sam, here is how last month went.</p>
<table role="presentation" width="100%" style="margin:18px 0"><tr>
<td style="background:#ecfdf5;{card}"><div style="{figure};color:#047857">1,284</div>
{caption}orders (+12%)</div></td>
<td width="12"></td>
<td style="background:#eff6ff;{card}"><div style="{figure};color:#1d4ed8">97.8%</div>
{caption}on time</div></td>
</tr></table>
<p><a href="https://northwind.example.test/reports/march" style="{button};border-radius:6px">Open the dashboard</a></p>
<p style="color:#6b7280;font-size:13px">The full report is attached as a PDF.</p>
</td></tr></table></td></tr></table></body></html>""",
        subtype="html",
    )
    html_part = message.get_payload()[1]
    html_part.add_related(png(88, 88, (20, 184, 166), (15, 118, 110)), "image", "png", cid=logo_cid)
    message.add_attachment(
        b"%PDF-1.4\n% a tiny stand-in for a report\n%%EOF\n", "application", "pdf", filename="march-report.pdf"
    )
    message.add_attachment(png(160, 100, (99, 102, 241), (34, 211, 238)), "image", "png", filename="orders-chart.png")
    return message.as_bytes()


def hostile(marker_url: str, to: str = "dev@example.test") -> bytes:
    """HTML that would call ``marker_url`` (and change the page title) if any script ran."""
    return html(
        "Hostile HTML",
        f"""<html><head><title>untouched</title>
<meta http-equiv="refresh" content="0; url={marker_url}?from=refresh">
<script>document.title = "script ran"; fetch("{marker_url}?from=script");
new Image().src = "{marker_url}?from=script-img";</script>
</head><body>
<h1 id="hostile">Nothing here runs</h1>
<img src="x-does-not-exist" onerror="document.title='onerror ran'; fetch('{marker_url}?from=onerror')">
<svg onload="fetch('{marker_url}?from=svg')"></svg>
<a href="javascript:fetch('{marker_url}?from=link')">a javascript: link</a>
</body></html>""",
        to=to,
    )


def remote_image(image_url: str, to: str = "dev@example.test") -> bytes:
    """HTML with a tracking pixel and a remote background at ``image_url``."""
    return html(
        "Remote content",
        f"""<html><body><h1 id="remote">Newsletter with a tracker</h1>
<img id="pixel" src="{image_url}?from=img" width="20" height="20" alt="pixel">
<div style="background-image:url('{image_url}?from=css');width:20px;height:20px"></div>
</body></html>""",
        to=to,
    )


def showcase() -> list[tuple[bytes, list[str]]]:
    """A believable inbox for the screenshots, oldest first: (message, recipients)."""
    shipped = html(
        "Your order #4471 has shipped",
        """<html><body style="font-family:Helvetica,Arial,sans-serif;color:#1f2937">
<h2 style="color:#b45309">On its way!</h2><p>Your order <b>#4471</b> left our warehouse today.</p>
<p>Expected delivery: <b>Thursday</b>.</p></body></html>""",
        to="Sam <sam@example.test>",
        sender="Parcel Co <orders@parcel.example.test>",
    )
    return [
        (
            plain("Welcome to the team", text="Hi Sam,\n\nGlad you're here! Your desk is by the window.\n"),
            ["dev@example.test"],
        ),
        (
            plain(
                "[CI] main passed: 1,221 tests",
                sender="CI <ci@build.example.test>",
                text="All checks passed on main (afb13cb) in 6 min 12 s.\n",
            ),
            ["dev@example.test"],
        ),
        (shipped, ["sam@example.test"]),
        (
            plain(
                "Reset your password",
                to="qa+reset@example.test",
                sender="Accounts <no-reply@app.example.test>",
                text="Someone asked to reset your password. The link is valid for 30 minutes:\n"
                "https://app.example.test/reset?token=3f9a\n",
            ),
            ["qa+reset@example.test"],
        ),
        (
            plain(
                "Confirm your email address",
                to="qa+signup@example.test",
                sender="Accounts <no-reply@app.example.test>",
                text="Welcome aboard! Confirm your address: https://app.example.test/confirm?c=81b2\n",
            ),
            ["qa+signup@example.test"],
        ),
        (newsletter("Sam <sam@example.test>"), ["sam@example.test"]),
    ]


def many_attachments(count: int, filler_bytes: int) -> bytes:
    """A message with ``count`` small attachments and ``filler_bytes`` of text (a big source)."""
    message = _message("Bulk <bulk@example.test>", "dev@example.test", f"{count} attachments")
    message.set_content(("0123456789" * 7 + "\n") * (filler_bytes // 71))
    for index in range(count):
        message.add_attachment(f"file {index}\n".encode(), "text", "plain", filename=f"file-{index:04d}.txt")
    return message.as_bytes()

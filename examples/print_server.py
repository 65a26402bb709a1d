"""A small SMTP server that prints every message it receives.

    python examples/print_server.py [--host 127.0.0.1] [--port 2525]

Then send it a message, for example with ``swaks --to you@example.com --server 127.0.0.1:2525``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging

from smtpgate import DataStream, Session, SMTPError, SMTPServer


async def on_data(stream: DataStream, session: Session) -> str:
    body = await stream.read()
    if stream.size_exceeded:
        raise SMTPError(552, "Message exceeds fixed maximum message size")
    message = email.message_from_bytes(body, policy=email.policy.default)
    envelope = session.envelope
    print("-" * 72)
    print(f"from:    {envelope.mail_from}")
    print(f"to:      {', '.join(str(r) for r in envelope.rcpt_to)}")
    print(f"client:  {session.client_hostname} ({session.remote_address}), {session.transmission_type}")
    print(f"subject: {message.get('subject', '')}")
    print(f"size:    {len(body)} bytes")
    print()
    print(body.decode("utf-8", "replace"))
    return f"Queued as {session.id}.{session.transaction}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = SMTPServer(on_data=on_data, size=25 * 1024 * 1024)
    server.on("listening", lambda server: print(f"smtpgate listening on {args.host}:{server.port}; Ctrl-C to stop"))
    server.run(args.port, host=args.host)  # until Ctrl-C or SIGTERM, then a graceful close


if __name__ == "__main__":
    main()

"""The HTTP side with everything else on: chaos triggers set over the API act on SMTP
under --verify and the limits, are counted in the metrics, and cannot be set cross-site;
the live event socket announces what the webhook receives."""

from __future__ import annotations

import asyncio
import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable

import aiohttp
import aiosmtplib
import pytest
from e2e_support import MESSAGE, Gate, KnotServer, Receiver, hook_url, subject_of, wait_until


def put_chaos(running: Gate, triggers: dict[str, object], origin: str | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.http_port}/api/v1/chaos",
        data=json.dumps(triggers).encode(),
        method="PUT",
        headers={"Content-Type": "application/json", **({"Origin": origin} if origin else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def send(running: Gate, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], MESSAGE.format(subject=subject).encode())


def test_chaos_over_the_api_with_verify_limits_and_metrics(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = gate(
        "--deliver",
        hook_url(webhook),
        "--verify",
        "--dns",
        dns_server.address,
        "--limit-recipients",
        "1000/min",
        metrics=True,
    )
    refuse_recipients = {"Recipient": {"ErrorCode": 451, "Probability": 100}}
    assert put_chaos(running, refuse_recipients, origin="http://evil.test") == 403  # a web page cannot
    send(running, "before-chaos")  # still accepted
    assert put_chaos(running, refuse_recipients) == 200
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(running, "during-chaos")
    assert refused.value.recipients["bob@mx.test"][0] == 451
    assert put_chaos(running, {}) == 200  # all triggers off again
    send(running, "after-chaos")
    wait_until(lambda: len(webhook.delivered_ids()) == 2, 30, "two deliveries")
    wait_until(running.queue_drained, 30, "the queue to drain")
    assert sorted(m["Subject"] for m in running.inbox()) == ["after-chaos", "before-chaos"]
    assert sorted(subject_of(body) for _, _, body in webhook.requests) == ["after-chaos", "before-chaos"]
    metrics = running.metrics()
    assert metrics["smtpgate_commands_refused_total{code=451,command=RCPT}"] == 1
    assert metrics["smtpgate_messages_accepted_total"] == 2


def test_event_socket_announces_what_the_webhook_receives(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = gate("--deliver", hook_url(webhook), "--verify", "--dns", dns_server.address)
    url = f"http://127.0.0.1:{running.http_port}/api/events"

    async def scenario() -> dict[str, object]:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as cross_site:
                await http.ws_connect(url, headers={"Origin": "http://evil.test"})
            assert cross_site.value.status == 403
            async with http.ws_connect(url) as socket:
                await aiosmtplib.send(
                    MESSAGE.format(subject="announced").encode(),
                    sender="bounce@ok.test",
                    recipients=["bob@mx.test"],
                    hostname="127.0.0.1",
                    port=running.port,
                    local_hostname="client.ok.test",
                    start_tls=False,
                    timeout=30,
                )
                for _ in range(20):  # the first "new" event (other kinds may come first)
                    event = json.loads((await socket.receive(timeout=30)).data)
                    if event.get("Type") == "new":
                        return dict(event["Data"])
        raise AssertionError("no 'new' event")

    data = asyncio.run(scenario())
    assert data["Subject"] == "announced"
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the delivery")
    ((_, _, body),) = webhook.requests
    assert body.endswith(running.inbox_raw(str(data["ID"])))

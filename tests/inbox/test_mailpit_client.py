"""A third-party Mailpit client (the npm package ``mailpit-api``) against smtpgate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from inbox_support import AppThread, make_message

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".venv" / "npm" / "node_modules"
SCRIPT = Path(__file__).with_name("mailpit_api_client.cjs")

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "mailpit-api").is_dir(),
    reason="needs node and mailpit-api in .venv/npm (scripts/test installs them)",
)


def test_mailpit_api_npm_client(inbox_app: AppThread) -> None:
    other = make_message("Other news", to="news@example.test")
    inbox_app.send(other)
    invoice = make_message("Invoice 7", to="Billing <billing@example.test>", body="Amount: 12 EUR")
    invoice.add_attachment(b"col1,col2\n", maintype="text", subtype="csv", filename="lines.csv")
    inbox_app.send(invoice)
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    result = subprocess.run(
        ["node", str(SCRIPT), inbox_app.url], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["info"]["Messages"] == 2
    assert seen["list"]["total"] == 2 and [m["Subject"] for m in seen["list"]["messages"]] == [
        "Invoice 7",
        "Other news",
    ]
    assert seen["search"]["messages_count"] == 1
    latest = seen["latest"]
    assert latest["Subject"] == "Invoice 7" and latest["From"]["Address"] == "from@example.test"
    assert latest["To"] == [{"Name": "Billing", "Address": "billing@example.test"}]
    assert latest["Text"].strip() == "Amount: 12 EUR"
    assert seen["headers"]["Subject"] == ["Invoice 7"]
    assert "Subject: Invoice 7" in seen["source"]
    assert seen["attachment"] == "col1,col2\n"
    assert seen["text"].strip() == "Amount: 12 EUR"
    assert seen["setRead"] == "ok" and seen["unreadAfter"] >= 1
    assert seen["waited"] == "Invoice 7"
    assert seen["chaos"]["Sender"] == {"ErrorCode": 451, "Probability": 0} and seen["chaosNow"] == seen["chaos"]
    assert seen["tags"] == []
    assert seen["config"]["MessageRelay"]["Enabled"] is False and seen["config"]["SpamAssassin"] is False
    assert seen["queries"] == {
        'subject:"Invoice 7"': 1,
        "from:example.test -subject:Other": 1,
        "has:attachment": 1,
        "is:unread": 1,
        "lines.csv": 1,
        "to:billing": 1,
        "tag:none": 0,
        "after:2000-01-01 before:2999-01-01": 2,
    }
    assert seen["setTags"] == "ok" and seen["tagsAfterSet"] == ["Tag 1", "Tag 2"]
    assert seen["renameTag"] == "ok" and seen["deleteTag"] == "ok" and seen["tagsAfterEdit"] == ["Renamed Tag"]
    assert seen["readBySearch"] == "ok" and seen["unreadInvoices"] == 1
    assert seen["countWait"] == 1
    assert "404" in seen["latestHTML"] and "HTML part not found" in seen["latestHTML"]  # none: 404, as Mailpit
    assert "404" in seen["missing"]
    assert len(seen["sent"]["ID"]) == 22 and seen["sentSubject"] == "Sent by mailpit-api"
    assert seen["deleteSearch"] == "ok" and seen["afterDeleteSearch"] == 2
    assert seen["deleteAll"] == "ok" and seen["afterDeleteAll"] == 0

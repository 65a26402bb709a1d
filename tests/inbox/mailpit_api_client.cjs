// Uses the npm package mailpit-api (a Mailpit client) against smtpgate, as its users do.
// node mailpit_api_client.cjs URL  -> prints one JSON object of what it saw.
const { MailpitClient } = require("mailpit-api");

async function main() {
  const mailpit = new MailpitClient(process.argv[2]);
  const seen = {};
  seen.info = await mailpit.getInfo();
  seen.list = await mailpit.listMessages();
  seen.search = await mailpit.searchMessages({ query: "subject:Invoice" });
  const latest = await mailpit.getMessageSummary();
  seen.latest = { ID: latest.ID, Subject: latest.Subject, From: latest.From, To: latest.To, Text: latest.Text,
                  Attachments: latest.Attachments };
  seen.headers = await mailpit.getMessageHeaders(latest.ID);
  seen.source = await mailpit.getMessageSource(latest.ID);
  const blob = await mailpit.getMessageAttachment(latest.ID, latest.Attachments[0].PartID);
  seen.attachment = Buffer.from(await blob.arrayBuffer()).toString("utf8");
  seen.text = await mailpit.renderMessageText(latest.ID);
  seen.setRead = await mailpit.setReadStatus({ IDs: [latest.ID], Read: false });
  seen.unreadAfter = (await mailpit.searchMessages({ query: "is:unread" })).messages_count;
  seen.waited = (await mailpit.waitForMessage({ query: "subject:Invoice" }, { timeout: 5000 })).Subject;
  seen.chaos = await mailpit.setChaosTriggers({ Sender: { ErrorCode: 451, Probability: 0 } });
  seen.chaosNow = await mailpit.getChaosTriggers();
  seen.tags = await mailpit.getTags();
  seen.config = await mailpit.getConfiguration();
  seen.queries = {};
  for (const query of ['subject:"Invoice 7"', "from:example.test -subject:Other", "has:attachment", "is:unread",
                       "lines.csv", "to:billing", "tag:none", "after:2000-01-01 before:2999-01-01"]) {
    seen.queries[query] = (await mailpit.searchMessages({ query, tz: "Europe/Paris" })).messages_count;
  }
  seen.setTags = await mailpit.setTags({ IDs: [latest.ID], Tags: ["Tag 1", "Tag 2"] });
  seen.tagsAfterSet = await mailpit.getTags();
  seen.renameTag = await mailpit.renameTag("Tag 1", "Renamed Tag");
  seen.deleteTag = await mailpit.deleteTag("Tag 2");
  seen.tagsAfterEdit = (await mailpit.getMessageSummary(latest.ID)).Tags;
  seen.readBySearch = await mailpit.setReadStatus({ Search: "subject:Invoice", Read: false }, { tz: "UTC" });
  seen.unreadInvoices = (await mailpit.searchMessages({ query: "is:unread subject:Invoice" })).messages_count;
  seen.countWait = (await mailpit.waitForMessages({ query: "subject:Invoice", count: 1 })).messages_count;
  seen.latestHTML = await mailpit.renderMessageHTML(latest.ID).catch((error) => String(error.message));
  try {
    await mailpit.getMessageSummary("does-not-exist");
    seen.missing = "no error";
  } catch (error) {
    seen.missing = String(error.message);
  }
  seen.sent = await mailpit.sendMessage({
    From: { Email: "node@example.test", Name: "Node" },
    To: [{ Email: "sent@example.test" }],
    Subject: "Sent by mailpit-api",
    Text: "from node",
  });
  seen.sentSubject = (await mailpit.getMessageSummary(seen.sent.ID)).Subject;
  seen.deleteSearch = await mailpit.deleteMessagesBySearch({ query: "subject:Other" });
  seen.afterDeleteSearch = (await mailpit.listMessages()).total;
  seen.deleteAll = await mailpit.deleteMessages();
  seen.afterDeleteAll = (await mailpit.listMessages()).total;
  console.log(JSON.stringify(seen));
}

main().catch((error) => {
  console.error(String(error && error.stack || error));
  process.exit(1);
});

"""The inbox: a message store, Mailpit's HTTP API and the web UI (needs the ``inbox`` extra)."""

"""Jobs: records, store, queue and runner, webhooks, recovery."""

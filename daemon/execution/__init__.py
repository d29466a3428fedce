"""Order execution against the ProjectX Gateway: client, rate limits, outbox, submitter."""

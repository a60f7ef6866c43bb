"""GitHub-facing parts: the publisher, the webhook app, the queue and its workers."""

"""Messaging: templates, senders, and the queue of messages to send."""

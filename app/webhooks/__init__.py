"""Signed webhooks (Standard Webhooks) from a durable outbox."""

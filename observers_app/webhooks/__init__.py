"""Webhook observers: HTTP endpoints called with signed JSON, retried, disabled when dead, SSRF-guarded."""

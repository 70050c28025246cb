"""Lifecycle events, subscriptions and the delivery of notifications (EVE025 gap #5.2)."""

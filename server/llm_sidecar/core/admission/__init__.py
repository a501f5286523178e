"""May this user spend now: per-user limits, quotas, prices and the bill of each call."""

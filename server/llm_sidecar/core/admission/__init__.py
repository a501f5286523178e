"""Admission: per-user limits and process-wide resource pressure."""

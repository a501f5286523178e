"""Guardrails: personal data and secrets found in what a user sends, masked, replaced
by placeholders restored only for that user, or refused, before a provider sees it."""

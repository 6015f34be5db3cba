"""Integrations of shoal with other frameworks (each behind its own extra)."""

"""Adoption of a database built without migrations (the entry point: migrations/adopt.py)."""

"""Shared test setup. Its directory is on sys.path, so the shared helpers import as `support.<module>` (tests/support/)."""

"""Shared test setup. Its directory is on sys.path, so helper modules in tests/ import by name."""

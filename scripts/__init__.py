"""Developer scripts (demo runner)."""

"""Talking to an indexer: connections, the subscription pool, market discovery."""

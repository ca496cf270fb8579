"""The embedded dYdX v4 indexer: protocol-faithful WebSocket + REST, a synthetic market, faults, replay."""

"""The dYdX v4 indexer wire model, shared by the feed (decode) and the simulator (encode).

Imports nothing else of the project. Reference: shared/dydx-v4-ws-protocol.md.
"""

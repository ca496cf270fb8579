"""The dYdX v4 indexer wire model, shared by the feed (decode) and the simulator (encode).

Imports nothing else of the project. Reference: the protocol reference (the indexer's own source, summarised).
"""

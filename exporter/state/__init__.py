"""What the stream means: order books, trades, markets, block height; the frame processor."""

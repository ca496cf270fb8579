"""What the stream means: the frame router, one handler per channel with its state, the market universe."""

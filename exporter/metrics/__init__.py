"""Every metric declared once (catalog) and the hot-path counting behind them (collector)."""

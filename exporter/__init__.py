"""dydx-exporter: Prometheus exporter for the dYdX v4 Indexer WebSocket feed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dydx-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

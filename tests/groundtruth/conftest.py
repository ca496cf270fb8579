"""The simulator suite's recording clients, for the ground-truth tests."""

from tests.simulator.conftest import probes

__all__ = ["probes"]

"""The soak (tests/soak.py, `make soak`) in its short form: seeded random faults against a busy simulator.

Asserts what the long form reports: every fault recovered from within its bound, nothing lost in any
fault-free window (exact per-market trade counts against the simulator's ground truth), and no growth of
tasks, fds, sockets or RSS between the first and the last quiescent sample beyond the slack.
"""

from __future__ import annotations

import pytest

from tests.soak import SoakConfig, run_soak

SECONDS = 22.0


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 60)
async def test_short_soak_recovers_loses_nothing_and_does_not_grow():
    config = SoakConfig(seconds=SECONDS, seed=11, markets=36, rate=3.0, block_time=0.1, window=(1.5, 3.0))
    report = await run_soak(config)
    print(report.render())
    assert not report.problems(), report.render()
    assert len(report.windows) >= 4, report.render()
    assert sum(w.published for w in report.windows) > 500, "the windows must carry real traffic"
    assert len(report.faults) >= 3, report.render()
    assert report.quiescent[-1].reconnects >= 1, report.render()

import asyncio
from exporter.simulator.server import Simulator, SimulatorConfig
from exporter.config import Settings
from exporter.service import Exporter
from tests.helpers import scrape, metric_sum
from tests.fixtures.simulator import control
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
async def main():
    sim = Simulator(SimulatorConfig(host="127.0.0.1", port=0, markets=3, block_time=0.1, ping_interval=0.3, pong_timeout=2.0, snapshot_delay=0.3))
    await sim.start()
    exp = Exporter(Settings.for_simulator(sim, backoff_max=0.5, silence_timeout=1.0, ping_timeout=1.5, handshake_timeout=1.0))
    await exp.start()
    await asyncio.sleep(2)
    s = await scrape(exp.metrics_url)
    print({k:v for k,v in s.items() if 'failures' in k[0] and v})
    await control(sim, "POST", "/control/faults", {"kind":"stall","seconds":2.0})
    for i in range(8):
        await asyncio.sleep(0.5)
        s = await scrape(exp.metrics_url)
        print(i, {k:v for k,v in s.items() if 'connection_failures' in k[0]})
    await exp.stop(); await sim.stop()
asyncio.run(main())

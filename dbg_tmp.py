import asyncio, socket, time
from exporter.simulator.server import Simulator, SimulatorConfig
from exporter.config import Settings
from exporter.service import Exporter
from tests.reliability.support import resources
import structlog, logging, aiohttp
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
async def main():
    sim = Simulator(SimulatorConfig(host="127.0.0.1", port=0, markets=3, block_time=0.1))
    await sim.start()
    exp = Exporter(Settings.for_simulator(sim))
    await exp.start()
    async with aiohttp.ClientSession() as s:
        for kw in [dict(data=b"x"*(1<<20)), dict(headers={"X-A":"a"*20000}), dict(headers={f"X-{i}":"a" for i in range(100)})]:
            try:
                async with s.get(exp.metrics_url, **kw) as r: print(r.status, len(await r.read()))
            except Exception as e: print("exc", repr(e))
        try:
            async with s.get(exp.url + "/"+"a"*10000) as r: print("longurl", r.status)
        except Exception as e: print("exc", repr(e))
        async with s.post(exp.metrics_url, data=b"x"*5000) as r: print("post", r.status)
    print(resources())
    await exp.stop(); await sim.stop()
asyncio.run(main())

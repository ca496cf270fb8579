"""docker-compose.yml, Dockerfile and .dockerignore: what `docker compose up` relies on, checked offline.

`docker compose config -q` (or the standalone `docker-compose config -q`) validates the file where one is
installed; neither needs an engine. The structure users rely on is always checked here in Python.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from exporter.config import OPTIONS
from tests.fixtures.tools import promtool
from tests.helpers import kill_if_running

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
EXPORTER_SERVICES = {"mainnet": "exporter", "simulator": "exporter-simulated"}
CORE_SERVICES = ("prometheus", "alertmanager", "grafana")


def load_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def services() -> dict[str, dict[str, Any]]:
    result = load_compose()["services"]
    assert isinstance(result, dict)
    return result


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) when it works, else the standalone `docker-compose`, else None.

    Neither needs an engine for `config`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.skipif(compose_command() is None, reason="neither docker compose nor docker-compose installed")
def test_docker_compose_config_validates():
    command = compose_command()
    assert command is not None
    for profile in EXPORTER_SERVICES:
        result = subprocess.run(
            [*command, "-f", str(COMPOSE), "--profile", profile, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_is_pinned_health_checked_and_restarted():
    found = services()
    assert set(found) >= {*EXPORTER_SERVICES.values(), "simulator", *CORE_SERVICES}
    for name, service in found.items():
        image = service.get("image", "")
        repo, _, tag = image.rpartition(":")
        pinned = repo and tag and tag != "latest" and re.search(r"\d", tag)
        assert pinned, f"{name}: image {image!r} not pinned"
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert "curl" not in test, f"{name}: healthcheck relies on curl"


def test_data_lives_in_named_volumes():
    doc = load_compose()
    declared = set(doc.get("volumes") or {})
    assert {"prometheus-data", "grafana-data"} <= declared
    used: set[str] = set()
    for service in doc["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared, "every named volume declared is used and vice versa"
    mounts = {v.split(":")[1] for v in doc["services"]["prometheus"]["volumes"]}
    assert "/prometheus" in mounts
    assert "/var/lib/grafana" in {v.split(":")[1] for v in doc["services"]["grafana"]["volumes"]}


def test_each_profile_runs_exactly_one_exporter_known_to_prometheus_as_exporter():
    found = services()
    for profile, exporter in EXPORTER_SERVICES.items():
        in_profile = [n for n, s in found.items() if profile in s.get("profiles", [])]
        exporters = [n for n in in_profile if n.startswith("exporter")]
        assert exporters == [exporter], f"profile {profile}: {exporters}"
        aliases = found[exporter]["networks"]["default"]["aliases"]
        assert "exporter" in aliases
    for core in CORE_SERVICES:
        assert not found[core].get("profiles"), f"{core} runs in every profile"
    assert found["simulator"]["profiles"] == ["simulator"]


def test_the_simulated_exporter_points_at_the_simulator_and_only_uses_real_options():
    found = services()
    known_env = {option.env for option in OPTIONS}
    for name in EXPORTER_SERVICES.values():
        env_names = {k for k in found[name].get("environment", {}) if k.startswith("DYDX_EXPORTER_")}
        unknown = env_names - known_env
        assert not unknown, f"{name}: {unknown} are not exporter options"
    env = found["exporter-simulated"]["environment"]
    command = found["simulator"]["command"]
    listen = command[command.index("--web.listen-address") + 1]
    port = listen.rsplit(":", 1)[1]
    assert env["DYDX_EXPORTER_DYDX_WS_URL"] == f"ws://simulator:{port}/v4/ws"
    assert env["DYDX_EXPORTER_DYDX_REST_URL"] == f"http://simulator:{port}"
    assert found["exporter-simulated"]["depends_on"]["simulator"]["condition"] == "service_healthy"


def test_every_mounted_path_exists_in_the_repo():
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts {source}, missing from the repo"
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_prometheus_in_compose_gets_a_valid_config_naming_the_compose_services(tmp_path):
    """Replays the container's start-up on this machine: its bind mounts become copies under tmp_path, its
    config rewrite runs with the real sh and sed, and the real promtool checks the result (rules included)."""
    service = services()["prometheus"]
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            destination = tmp_path / target.lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (REPO / source).is_dir() else shutil.copyfile
            copy(REPO / source, destination)
    for tmpfs in service.get("tmpfs", []):
        (tmp_path / tmpfs.split(":")[0].lstrip("/")).mkdir(parents=True, exist_ok=True)
    script = service["command"][0]
    rewrite, _, launch = script.partition("&& exec /bin/prometheus")
    config_flag = re.search(r"--config\.file=(\S+)", launch)
    assert config_flag, launch
    for directory in ("/etc/", "/run/"):
        rewrite = rewrite.replace(f" {directory}", f" {tmp_path}{directory}")
    subprocess.run(["sh", "-c", rewrite], check=True, timeout=10)
    generated = tmp_path / config_flag.group(1).lstrip("/")
    check = promtool("check", "config", str(generated), timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout and "rule" in check.stdout.lower()
    config = yaml.safe_load(generated.read_text(encoding="utf-8"))
    targets = [
        target
        for section in (config["scrape_configs"], config["alerting"]["alertmanagers"])
        for job in section
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert {"exporter:9741", "simulator:3003", "alertmanager:9093"} <= set(targets), targets
    assert not any(t.startswith("127.0.0.1:") and not t.endswith(":9090") for t in targets), targets


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) grouped by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multistage_non_root_and_health_checked():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build"
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE))
    for stage in stages:
        base = stage[0].split()[1]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert ":" in base and not base.endswith(":latest"), f"base image {base} not pinned"
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runs as a non-root user"
    assert any("COPY --from=" in line for line in final), "the runtime stage copies the built artifact"
    assert not any(re.search(r"\bpip install\b", line) for line in final), "no pip install in the runtime"
    healthcheck = [line for line in final if line.upper().startswith("HEALTHCHECK ")]
    assert len(healthcheck) == 1 and "curl" not in healthcheck[0]
    assert any(line == 'ENTRYPOINT ["dydx-exporter"]' for line in final)
    assert any(line.startswith("EXPOSE 9741") for line in final)
    assert "HEALTHCHECK_URL=http://127.0.0.1:9741/healthz" in " ".join(final)


def test_dockerignore_keeps_the_context_to_the_package():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "allow-list: everything is excluded unless re-included"
    included = {line[1:].rstrip("/") for line in rules if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for line in stage
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    }
    assert copied <= included, f"the Dockerfile copies {copied - included}, which .dockerignore excludes"
    for forbidden in (".venv", ".git", "tests"):
        assert forbidden not in included


def healthcheck_command() -> list[str]:
    line = next(line for line in dockerfile_stages()[-1] if line.upper().startswith("HEALTHCHECK "))
    exec_form = line[line.index("CMD ") + 4 :]
    command = json.loads(exec_form)
    assert isinstance(command, list)
    return command


@pytest.mark.timeout(30)
async def test_the_image_healthcheck_probe_tells_healthy_from_not(unused_tcp_port):
    """The HEALTHCHECK one-liner, run as Docker would run it, against a live and a dead /healthz."""
    command = healthcheck_command()
    assert command[0] == "python"
    argv = [sys.executable, *command[1:]]

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def probe(url: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv, env={"HEALTHCHECK_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            return await asyncio.wait_for(proc.wait(), 20)
        finally:
            await kill_if_running(proc)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        assert await probe(f"http://127.0.0.1:{port}/healthz") == 0
        assert await probe(f"http://127.0.0.1:{port}/missing") != 0
    finally:
        await runner.cleanup()
    assert await probe(f"http://127.0.0.1:{unused_tcp_port}/healthz") != 0

"""compose.yaml is a valid Compose file with the production services."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose_config() -> dict:
    binary = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
    result = subprocess.run(
        [binary, "-f", "compose.yaml", "config", "--format", "json"],
        cwd=ROOT,
        env={"SECRET_KEY": "compose-test-secret", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_validates_with_docker_compose_config():
    services = compose_config()["services"]
    assert {"postgres", "redis", "web", "worker", "reaper"} <= set(services)


def test_it_gives_every_service_a_healthcheck():
    services = compose_config()["services"]
    assert all("healthcheck" in service for service in services.values())


def test_it_reserves_a_gpu_for_the_worker():
    devices = compose_config()["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_it_runs_the_web_tier_in_celery_mode_without_a_gpu():
    services = compose_config()["services"]
    assert services["web"]["environment"]["INFERENCE_MODE"] == "celery"
    assert "deploy" not in services["web"]
    assert "reaper" in " ".join(services["reaper"]["command"])

"""compose.yaml is a valid Compose file with the production services."""

import json
import shutil
import subprocess
import sys
from ipaddress import ip_address, ip_network
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


def test_it_lets_clients_reach_only_the_tls_proxy():
    services = compose_config()["services"]
    assert {port["target"] for port in services["proxy"]["ports"]} == {80, 443}
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]


def test_it_proxies_the_site_to_daphne():
    config = compose_config()
    caddyfile = config["configs"]["caddyfile"]["content"]
    assert "reverse_proxy web:8000" in caddyfile
    assert config["services"]["proxy"]["configs"][0]["target"] == "/etc/caddy/Caddyfile"


def test_it_trusts_forwarded_client_addresses_only_from_the_proxys_own_address():
    config = compose_config()
    proxy_address = config["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    subnet = config["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ip_address(proxy_address) in ip_network(subnet)
    for name in ("web", "worker", "reaper"):
        assert config["services"][name]["environment"]["TRUSTED_PROXIES"] == proxy_address

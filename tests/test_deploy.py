"""The production deployment files: docker-compose.yml validates and configures the app it runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import build_parser
from searchcore.config import env_names
from tests.support import installed

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"MYSQL_PASSWORD": "app-secret", "MYSQL_ROOT_PASSWORD": "root-secret"}
APPS = ("app", "admin")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config`: the file as Compose resolves it, or why it is invalid."""
    binary = installed("docker-compose", "docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "SEARCHCORE_", "COMPOSE_"))}
    return subprocess.run([binary, "--file", str(ROOT / "docker-compose.yml"), "--profile", "admin", "config"],
                          capture_output=True, text=True, env={**clean, **env}, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The resolved compose file."""
    done = compose_config(PASSWORDS)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_file_validates_with_every_service(compose: dict[str, Any]) -> None:
    assert {"etcd", "minio", "milvus", "mysql", "app", "admin"} <= set(compose["services"])


def test_compose_refuses_to_start_without_database_passwords() -> None:
    done = compose_config({})

    assert done.returncode != 0
    assert "MYSQL_PASSWORD" in done.stderr


@pytest.mark.parametrize("service", APPS)
def test_app_environment_is_only_settings_the_app_reads(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]

    assert set(env) <= set(env_names())
    assert env["SEARCHCORE_MILVUS_URI"] == "http://milvus:19530"
    assert env["SEARCHCORE_DB_URL"] == "mysql://searchcore:app-secret@mysql:3306/searchcore"
    assert env["SEARCHCORE_MODEL_DIR"] == "/models"
    assert any(v.endswith(":/models:rw") or v.endswith(":/models") for v in _volumes(compose, service))


@pytest.mark.parametrize("service", APPS)
def test_app_starts_after_milvus_and_mysql_are_healthy(compose: dict[str, Any], service: str) -> None:
    depends = compose["services"][service]["depends_on"]

    assert {name: d["condition"] for name, d in depends.items()} == {"milvus": "service_healthy",
                                                                     "mysql": "service_healthy"}
    for name in ("milvus", "mysql", "etcd", "minio"):
        assert compose["services"][name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert "mysql:/var/lib/mysql:rw" in _volumes(compose, "mysql")


@pytest.mark.parametrize("service", APPS)
def test_app_command_is_one_app_py_accepts_listening_on_every_interface(compose: dict[str, Any],
                                                                          service: str) -> None:
    command = compose["services"][service]["command"]
    assert command[:2] == ["python", "app.py"]

    args = build_parser().parse_args(command[2:])

    assert (args.host, args.port) == ("0.0.0.0", 7860)
    assert args.read_only or args.auth_file, "a published app must be read-only or need a login"


def test_public_app_is_search_only_on_7860_and_admin_is_local(compose: dict[str, Any]) -> None:
    app, admin = compose["services"]["app"], compose["services"]["admin"]

    assert "--read-only" in app["command"]
    assert [_port(p) for p in app["ports"]] == [("", "7860", "7860")]
    assert [_port(p) for p in admin["ports"]] == [("127.0.0.1", "7861", "7860")]
    assert all("ports" not in compose["services"][name] for name in ("etcd", "minio", "milvus", "mysql"))


def test_dockerfile_copies_only_files_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")

    assert "FROM python:3.11-slim" in dockerfile
    assert "--index-url https://download.pytorch.org/whl/cpu" in dockerfile
    for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"


def _volumes(compose: dict[str, Any], service: str) -> list[str]:
    out = []
    for v in compose["services"][service].get("volumes", []):
        if isinstance(v, dict):  # newer Compose writes the long form
            v = f"{v['source']}:{v['target']}" + (":ro" if v.get("read_only") else ":rw")
        out.append(v)
    return out


def _port(port: Any) -> tuple[str, str, str]:
    """(host ip, published, target) from either form Compose writes."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), str(port["published"]), str(port["target"])
    parts = port.split("/")[0].split(":")
    return ("", *parts) if len(parts) == 2 else tuple(parts)  # type: ignore[return-value]

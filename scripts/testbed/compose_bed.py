"""The compose stack bed: ``docker-compose.yaml`` built, started, waited on and removed on the local dockerd.

What the stack's integration test (``tests/integration/test_compose_stack.py``), its benchmark
(``bench/compose_stack.py``) and a developer (``python -m scripts.testbed.compose_bed up``) share:

* :func:`prepare` -- the engine, the base and serving images (:mod:`scripts.testbed.docker_bed`,
  :mod:`scripts.testbed.serve_image`), the build's CA bundle at ``.cache/images/build-ca.crt``
  (copied only when its content changed, so Docker's layer cache holds), and an env file written
  by :mod:`scripts.compose_env` with fresh secrets and free ports;
* :class:`Stack` -- ``docker-compose`` (Debian's 1.29, else ``docker compose``) on that env file
  and project: ``build`` (one service per image), ``up``, :meth:`Stack.wait_healthy` (every
  long-running container ``healthy``, the one-shot services exited 0), ``down -v`` and a check
  that no container or volume of the project is left (:func:`project_leftovers`);
* :meth:`Stack.api` -- the stack's REST API (:mod:`scripts.testbed.compose_api`).

Builds run with the legacy builder (``DOCKER_BUILDKIT=0``: engine 20.10 here, no buildx) and
``/usr/bin`` first on ``PATH`` so ``docker-compose`` calls Debian's CLI. Every command's output
goes to ``<dir>/compose.log``; errors quote its tail with the env file's secrets replaced by ``***``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.testbed import ROOT, TESTBED, pid_alive
from scripts.testbed.compose_api import AirflowApi

COMPOSE_FILE = ROOT / "docker-compose.yaml"
CA_COPY = ROOT / ".cache" / "images" / "build-ca.crt"
#: One service per image (the others share these images), in the order they are built.
BUILD_SERVICES = ("postgres", "mariadb", "redis", "hdfs-namenode", "mlflow", "airflow-init")
#: Services that run once and exit 0.
ONE_SHOT = frozenset({"airflow-init", "hdfs-init"})
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ENDPOINT_LABEL = "airflow-ml-provider.endpoint"
#: Every layer of the stack's images carries this label (scripts/images/*/Dockerfile, right after FROM);
#: its value names the image, ``airflow-build`` the Airflow image's build stage.
STACK_LABEL = "airflow-ml-provider.stack"
#: Test projects are named ``<prefix><pid>``; a dead pid's project is removed by :func:`remove_stale`.
TEST_PREFIX = "amp-test-"


class ComposeBedError(RuntimeError):
    """docker-compose failed, or the stack did not become healthy (the message has the redacted details)."""


def compose_command() -> list[str]:
    """Debian's ``docker-compose`` (1.29), else Compose v2's ``docker compose``; ComposeBedError if neither."""
    for candidate in ("/usr/bin/docker-compose", shutil.which("docker-compose")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    raise ComposeBedError("neither docker-compose nor `docker compose` found (scripts/system_deps.sh installs it)")


def compose_env() -> dict[str, str]:
    """The environment of docker-compose: the legacy builder, and Debian's docker CLI first on PATH."""
    path = os.environ.get("PATH", "")
    return {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0", "PATH": f"/usr/bin:{path}"}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value
    return values


def _engine() -> Any:
    """A client of the local engine, started first if it is not running (a fresh machine's first call)."""
    import docker

    from scripts.testbed import docker_bed

    docker_bed.ensure_dockerd()
    return docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=120)


def project_leftovers(project: str) -> dict[str, list[str]]:
    """Names of the containers and volumes still labelled with compose ``project`` (empty lists: none)."""
    client = _engine()
    try:
        label = f"{PROJECT_LABEL}={project}"
        containers = [c.name for c in client.containers.list(all=True, filters={"label": label})]
        volumes = [v.name for v in client.volumes.list(filters={"label": label})]
    finally:
        client.close()
    return {"containers": containers, "volumes": volumes}


def purge_project(project: str) -> None:
    """Force-remove every container and volume labelled with compose ``project`` (no env file needed)."""
    client = _engine()
    try:
        label = f"{PROJECT_LABEL}={project}"
        for c in client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
        for v in client.volumes.list(filters={"label": label}):
            v.remove(force=True)
    finally:
        client.close()


def remove_stale(prefix: str = TEST_PREFIX) -> list[str]:
    """Remove test projects ``<prefix><pid>`` whose pid is gone (a killed run's containers, volumes and env
    file with its secrets); their names."""
    client = _engine()
    try:
        names = {
            (c.labels or {}).get(PROJECT_LABEL, "")
            for c in client.containers.list(all=True, filters={"label": PROJECT_LABEL})
        }
        names |= {(v.attrs.get("Labels") or {}).get(PROJECT_LABEL, "") for v in client.volumes.list()}
    finally:
        client.close()
    stale = sorted(
        n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit() and not pid_alive(int(n[len(prefix) :]))
    )
    for name in stale:
        purge_project(name)
    for workdir in (TESTBED / "compose").glob(f"{prefix}*"):  # a killed run's secrets
        pid = workdir.name[len(prefix) :]
        if pid.isdigit() and not pid_alive(int(pid)):
            (workdir / ".env").unlink(missing_ok=True)
    return stale


def prune_old_images() -> int:
    """Remove the untagged images earlier builds of the stack left (labelled :data:`STACK_LABEL`); how many.

    The newest Airflow build stage stays: the legacy builder keeps it untagged, and it is the layer
    cache of the image's venv. Images a container still uses are kept (no force).
    """
    import docker

    client = _engine()
    removed = 0
    try:
        dangling = client.images.list(filters={"dangling": True, "label": STACK_LABEL})
        stages = [i for i in dangling if (i.labels or {}).get(STACK_LABEL) == "airflow-build"]
        keep = {max(stages, key=lambda i: str(i.attrs.get("Created", ""))).id} if stages else set()
        for image in dangling:
            if image.id in keep:
                continue
            try:
                client.images.remove(image.id)
                removed += 1
            except docker.errors.APIError:  # in use by a container, or gone with another one
                pass
    finally:
        client.close()
    return removed


def copy_build_ca() -> None:
    """Put the host's CA bundle at ``.cache/images/build-ca.crt`` for the builds, unless it is there already."""
    from scripts.testbed.docker_bed import host_ca_bundle

    src = host_ca_bundle()
    if CA_COPY.is_file() and filecmp.cmp(src, CA_COPY, shallow=False):
        return
    CA_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, CA_COPY)


@dataclass
class Stack:
    """One compose project of ``docker-compose.yaml`` on the local engine.

    :param project: the compose project name (container and volume labels carry it).
    :param env_file: the env file (``.env`` layout) with the secrets and ports.
    :param workdir: where ``compose.log`` goes.
    """

    project: str
    env_file: Path
    workdir: Path
    command: list[str] = field(default_factory=compose_command)

    @property
    def values(self) -> dict[str, str]:
        """The env file's variables."""
        return read_env_file(self.env_file)

    @property
    def log(self) -> Path:
        return self.workdir / "compose.log"

    def secrets(self) -> list[str]:
        """Every secret of the env file (for redaction)."""
        return [v for k, v in self.values.items() if k.endswith(("_PASSWORD", "_KEY", "_SECRET")) and v]

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    def compose(self, *args: str, timeout: float = 600) -> str:
        """Run ``docker-compose --env-file F -p P -f docker-compose.yaml ARGS``; its output (logged too)."""
        cmd = [*self.command, "--env-file", str(self.env_file), "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            done = subprocess.run(
                cmd, cwd=ROOT, env=compose_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise ComposeBedError(f"docker-compose {' '.join(args)} timed out after {timeout:.0f} s") from e
        output = done.stdout + done.stderr
        with self.log.open("a") as f:
            f.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(args)} ({time.monotonic() - started:.1f} s)\n")
            f.write(self.redact(output))
        if done.returncode != 0:
            tail = "\n".join(output.splitlines()[-40:])
            raise ComposeBedError(
                f"docker-compose {' '.join(args)} failed (exit {done.returncode}):\n{self.redact(tail)}"
            )
        return output

    def build(self, services: Sequence[str] = BUILD_SERVICES) -> float:
        """Build the stack's images (what the layer cache has is reused); seconds taken."""
        started = time.monotonic()
        for service in services:
            # 1.29's legacy builds leave a failed step's container behind unless --force-rm (v2: BuildKit).
            legacy = ["--force-rm"] if self.command[-1] != "compose" else []
            self.compose("build", *legacy, service, timeout=3600)
        prune_old_images()  # a rebuilt image leaves its predecessor untagged: keep the disk bounded
        return time.monotonic() - started

    def up(self, workers: int = 1, timeout: float = 900) -> None:
        """``up -d`` without building, with ``workers`` Celery workers (1.29 waits for the depends_on conditions)."""
        try:
            self.compose("up", "-d", "--no-build", "--scale", f"airflow-worker={workers}", timeout=timeout)
        except ComposeBedError as e:  # 1.29 names a failed dependency only by container id: name them all
            status = self.status()
            bad = [n for n, s in status.items() if s == "unhealthy" or (s.startswith("exited(") and s != "exited(0)")]
            raise ComposeBedError(f"{e}\ncontainer states: {status}\n{self.logs_tail(bad)}") from e

    def containers(self) -> list[Any]:
        """The project's containers (docker SDK objects, with fresh attributes)."""
        client = _engine()
        try:
            return list(client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}))
        finally:
            client.close()

    def status(self) -> dict[str, str]:
        """Container name -> ``healthy`` / ``starting`` / ``unhealthy`` / ``exited(N)`` / ``running`` (no check)."""
        result = {}
        for c in self.containers():
            state = c.attrs["State"]
            if state.get("Status") == "exited":
                result[c.name] = f"exited({state.get('ExitCode')})"
            else:
                result[c.name] = (state.get("Health") or {}).get("Status") or state.get("Status", "?")
        return result

    def wait_healthy(self, timeout: float = 900, poll: float = 3.0) -> dict[str, str]:
        """Wait until every long-running container is healthy and each one-shot one exited 0; the last status.

        A one-shot service that exits non-zero, or a container that turns unhealthy or exits, fails at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            bad = {}
            for c in self.containers():
                service = c.labels.get(SERVICE_LABEL, "")
                s = status.get(c.name, "")
                if (service in ONE_SHOT and s.startswith("exited(") and s != "exited(0)") or (
                    service not in ONE_SHOT and (s == "unhealthy" or s.startswith("exited("))
                ):
                    bad[c.name] = s
            if bad:
                raise ComposeBedError(f"containers failed: {bad}\n{self.logs_tail(list(bad))}")
            pending = {n: s for n, s in status.items() if s not in ("healthy", "exited(0)")}
            if status and not pending:
                return status
            if time.monotonic() > deadline:
                raise ComposeBedError(f"not healthy after {timeout:.0f} s: {pending}\n{self.logs_tail(list(pending))}")
            time.sleep(poll)

    def created_at(self) -> float | None:
        """When the project's oldest container was created (epoch s), or None when it has none."""
        import datetime as dt

        times = [dt.datetime.fromisoformat(c.attrs["Created"]).timestamp() for c in self.containers()]
        return min(times) if times else None

    def logs_tail(self, containers: Iterable[str] = (), lines: int = 60) -> str:
        """The last ``lines`` of each named container's log (all of the project's when none), redacted."""
        wanted = set(containers)
        parts = []
        for c in self.containers():
            if wanted and c.name not in wanted:
                continue
            text = c.logs(tail=lines).decode(errors="replace")
            parts.append(f"--- {c.name}:\n{text}")
        return self.redact("\n".join(parts))

    def down(self, timeout: float = 300) -> dict[str, list[str]]:
        """``down -v --remove-orphans``, then force-remove anything of the project left; what was left."""
        try:
            self.compose("down", "-v", "--remove-orphans", "-t", "30", timeout=timeout)
        finally:
            left = project_leftovers(self.project)
            if left["containers"] or left["volumes"]:
                purge_project(self.project)
        return left

    def api(self) -> AirflowApi:
        """A REST client of the stack's Airflow, logged in as the admin of the env file."""
        v = self.values
        base = f"http://{v.get('STACK_HOST', '127.0.0.1')}:{v['AIRFLOW_PORT']}"
        return AirflowApi(base, v.get("AIRFLOW_ADMIN_USER", "admin"), v["AIRFLOW_ADMIN_PASSWORD"])


def _endpoint(endpoint: str, since: float | None) -> list[Any]:
    """Containers of ``endpoint`` on the local engine, only those created at or after ``since`` (epoch s) if given."""
    import datetime as dt

    client = _engine()
    try:
        found = client.containers.list(all=True, filters={"label": f"{ENDPOINT_LABEL}={endpoint}"})
    finally:
        client.close()
    if since is None:
        return list(found)
    return [c for c in found if dt.datetime.fromisoformat(c.attrs["Created"]).timestamp() >= since]


def endpoint_containers(endpoint: str, since: float | None = None) -> list[str]:
    """Names of the deploy step's containers of ``endpoint`` (not part of the project), optionally only newer ones."""
    return [c.name for c in _endpoint(endpoint, since)]


def remove_endpoint_containers(endpoint: str, since: float | None = None) -> list[str]:
    """Force-remove the containers of ``endpoint`` created at or after ``since`` (all when None); their names."""
    found = _endpoint(endpoint, since)
    for c in found:
        c.remove(force=True)
    return [c.name for c in found]


def prepare(workdir: Path, project: str, overrides: dict[str, str] | None = None) -> Stack:
    """Engine, base and serving images, build CA, and a fresh env file with free ports; the :class:`Stack`.

    :param workdir: the bed's directory (``.env`` and ``compose.log`` go here).
    :param project: the compose project name.
    :param overrides: env values to set (``KEY: value``), e.g. ``STACK_SEED_ROWS``.
    """
    from scripts import compose_env
    from scripts.testbed import docker_bed, serve_image

    docker_bed.ensure_dockerd()
    docker_bed.ensure_base_image()
    serve_image.ensure_serve_image()
    copy_build_ca()
    workdir.mkdir(parents=True, exist_ok=True)
    env_file = workdir / ".env"
    sets = {"COMPOSE_PROJECT_NAME": project, **(overrides or {})}
    args = ["--output", str(env_file), "--force", "--free-ports"]
    args += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    with open(os.devnull, "w") as quiet:
        old = sys.stdout
        sys.stdout = quiet
        try:
            rc = compose_env.main(args)
        finally:
            sys.stdout = old
    if rc != 0:
        raise ComposeBedError(f"scripts.compose_env could not write {env_file}")
    return Stack(project=project, env_file=env_file, workdir=workdir)


def main(argv: Sequence[str] | None = None) -> int:
    """``up`` (build, start, wait healthy, print the env file's path) or ``down`` of a developer stack."""
    parser = argparse.ArgumentParser(prog="python -m scripts.testbed.compose_bed", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--project", default="amp-dev", help="compose project name (default amp-dev)")
    parser.add_argument("--workers", type=int, default=1, help="Celery workers (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an env value (up)")
    args = parser.parse_args(argv)
    workdir = TESTBED / "compose" / args.project
    try:
        if args.command == "up":
            sets = dict(item.split("=", 1) for item in args.set)
            stack = prepare(workdir, args.project, sets)
            built = stack.build()
            started = time.monotonic()
            stack.up(args.workers)
            stack.wait_healthy()
            print(f"compose_bed: built in {built:.0f} s, healthy {time.monotonic() - started:.0f} s after up")
            print(f"compose_bed: env file {stack.env_file}")
        elif args.command == "down":
            stack = Stack(project=args.project, env_file=workdir / ".env", workdir=workdir)
            since = stack.created_at()
            endpoint = stack.values.get("ML_PIPELINE_ENDPOINT") or "ml-pipeline"
            removed = remove_endpoint_containers(endpoint, since) if since is not None else []
            print(f"compose_bed: down; left behind and removed: {stack.down()}; endpoint containers: {removed}")
        else:
            stack = Stack(project=args.project, env_file=workdir / ".env", workdir=workdir)
            print(json.dumps(stack.status(), indent=1))
    except ComposeBedError as e:
        print(f"compose_bed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

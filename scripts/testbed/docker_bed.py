"""The Docker test bed: a local dockerd, a single-node swarm, and images built here without a registry.

No image registry is reachable from our machines, so every image is made locally:

* ``airflow-ml-provider/base:bookworm`` -- ``mmdebstrap --variant=apt`` builds a Debian bookworm root
  filesystem (Python 3.11, libgomp1; recipe in ``scripts/images/base/``) as a tarball cached at
  ``.cache/images/base-bookworm.tar``, which ``docker import`` turns into the image.
* ``airflow-ml-provider/train:<hash>`` (also ``:latest``) -- ``scripts/images/train/Dockerfile`` on top
  of the base: a venv ``/opt/venv`` with numpy/pandas/pyarrow/lightgbm and the provider's
  ``airflow_ml_provider.jobs`` package (no Airflow). ``<hash>`` is the first 12 hex digits of a sha256
  over the Dockerfile, the base recipe and every file under ``airflow_ml_provider/jobs/``, so a change to
  any of them (a new jobs module too) gives a new tag and a rebuild.

Every image built FROM the base (train, and serve in :mod:`scripts.testbed.serve_image`) gets the
same two files in its build context from :func:`docker_build`: ``build-ca.crt`` (the host's CA
bundle) and ``pip-install.sh`` (``scripts/images/base/pip-install.sh``: the venv and pip set-up they
share). The script belongs to the base recipe of those images (:func:`base_inputs_hash`) but not to
the root filesystem's (:func:`rootfs_inputs_hash`), so editing it rebuilds them, not the tarball.

The engine itself is ``scripts/dockerd.sh`` (start / swarm); this module calls it only when the
API on ``/var/run/docker.sock`` does not answer, or the node is not an active swarm manager.
Containers must use ``--network=host`` or ``none`` (dockerd runs with ``--bridge=none``) and swarm
services must not rely on VIPs or published ports (no IPVS in the kernel).

Everything is idempotent: when all is there, :func:`ensure_all` takes a few milliseconds (it talks
to the engine's API over its socket directly). Build logs go to ``.testbed/images/``; a failure
raises :class:`DockerBedError` carrying the log's tail. Concurrent callers serialise on a file lock.

Measured on a 2-CPU VM: mmdebstrap 43-61 s, ``docker import`` ~4 s, train image build ~32 s
(downloads ~120 MB of wheels); base image 189 MB, train image 596 MB; ensure_all() with everything
there ~25 ms (the CLI ~0.35 s, mostly interpreter start).

Command line::

    python -m scripts.testbed.docker_bed ensure        # prints the tags (JSON)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / ".testbed"
LOG_DIR = TESTBED / "images"
CACHE_DIR = ROOT / ".cache" / "images"
IMAGES_DIR = ROOT / "scripts" / "images"
BASE_DIR = IMAGES_DIR / "base"
TRAIN_DOCKERFILE = IMAGES_DIR / "train" / "Dockerfile"
#: The venv + pip set-up shared by every image built FROM the base (copied into each build context).
PIP_INSTALL_SH = BASE_DIR / "pip-install.sh"
JOBS_DIR = ROOT / "airflow_ml_provider" / "jobs"
DOCKERD_SH = ROOT / "scripts" / "dockerd.sh"

SOCKET = "/var/run/docker.sock"
SUITE = "bookworm"
BASE_TAG = f"airflow-ml-provider/base:{SUITE}"
BASE_TARBALL = CACHE_DIR / f"base-{SUITE}.tar"
TRAIN_REPO = "airflow-ml-provider/train"
TRAIN_LATEST = f"{TRAIN_REPO}:latest"
#: Image label holding the hash of the inputs an image was made from.
INPUTS_LABEL = "airflow-ml-provider.inputs"
#: Environment and command of the imported base image (``docker import`` sets none by itself).
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
#: Left out of the root filesystem: ~40 MB nobody reads in a container.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/info/*",
)
#: Skipped when hashing or copying the jobs package.
_IGNORED_PARTS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_IGNORED_SUFFIXES = (".pyc", ".pyo")


class DockerBedError(RuntimeError):
    """The engine could not be started, or an image could not be built (the message has the log tail)."""


# --- the engine's API, straight over its unix socket (fast path: no CLI process) ---------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _api(path: str, timeout: float = 10.0) -> tuple[int, Any]:
    """GET ``path`` from the engine; (status, decoded JSON or text). Raises OSError when unreachable."""
    conn = _UnixHTTPConnection(SOCKET, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    except http.client.HTTPException as e:
        raise OSError(f"bad answer from {SOCKET}: {e}") from e
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body) if body else None
    except ValueError:
        return resp.status, body.decode(errors="replace")


def api_up() -> bool:
    """Whether the engine's API answers on :data:`SOCKET`."""
    try:
        return _api("/_ping", timeout=5.0)[0] == 200
    except OSError:
        return False


def image_inspect(ref: str) -> dict[str, Any] | None:
    """The engine's description of image ``ref``, or None when there is no such image."""
    status, body = _api(f"/images/{urllib.parse.quote(ref, safe='/:@')}/json")
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise DockerBedError(f"inspecting image {ref}: HTTP {status}: {body}")
    return body


def image_label(ref: str, key: str) -> str | None:
    info = image_inspect(ref)
    if info is None:
        return None
    labels = (info.get("Config") or {}).get("Labels") or {}
    return labels.get(key)


def swarm_manager_active() -> bool:
    status, info = _api("/info")
    if status != 200 or not isinstance(info, dict):
        return False
    swarm = info.get("Swarm") or {}
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


# --- commands ------------------------------------------------------------------------------------


def docker_cli() -> str:
    """The Docker CLI: Debian's (same release as the engine, legacy builder) if installed."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise DockerBedError("no docker CLI found (scripts/system_deps.sh installs docker.io)")
    return found


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _run_logged(cmd: Sequence[str], log: Path, what: str, timeout: float, env: dict[str, str] | None = None) -> None:
    """Run ``cmd`` with its output appended to ``log``; DockerBedError with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n")
        out.flush()
        try:
            rc = subprocess.run(
                list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
        except OSError as e:
            raise DockerBedError(f"{what}: cannot run {cmd[0]}: {e}") from e
    if rc != 0:
        why = f"timed out after {timeout:.0f}s" if rc is None else f"exit code {rc}"
        raise DockerBedError(f"{what} failed ({why}); log {log}, last lines:\n{_tail(log)}")


def _dockerd_sh(action: str, timeout: float = 120.0) -> None:
    proc = subprocess.run(
        ["bash", str(DOCKERD_SH), action],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise DockerBedError(f"scripts/dockerd.sh {action} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive file lock under .testbed/, so parallel test processes build an image only once."""
    TESTBED.mkdir(parents=True, exist_ok=True)
    with (TESTBED / f"{name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- engine --------------------------------------------------------------------------------------


def ensure_dockerd() -> None:
    """The engine answers on /var/run/docker.sock (``scripts/dockerd.sh start`` if it does not)."""
    if api_up():
        return
    _dockerd_sh("start")
    if not api_up():
        raise DockerBedError(f"scripts/dockerd.sh start succeeded but {SOCKET} does not answer")


def ensure_swarm() -> None:
    """This engine is an active single-node swarm manager (``scripts/dockerd.sh swarm`` if not)."""
    ensure_dockerd()
    if swarm_manager_active():
        return
    _dockerd_sh("swarm")


# --- base image ----------------------------------------------------------------------------------


def _read_list(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def base_packages() -> list[str]:
    return _read_list(BASE_DIR / "packages.txt")


def rootfs_inputs_hash() -> str:
    """Hash of everything the base root filesystem (tarball and base image) is made from."""
    h = hashlib.sha256()
    for part in (
        SUITE,
        "variant=apt",
        "\n".join(base_packages()),
        "\n".join(_read_list(BASE_DIR / "sources.list")),
        "\n".join(DPKG_EXCLUDES),
        "\n".join(BASE_CHANGES),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def base_inputs_hash() -> str:
    """Hash of what an image built FROM the base takes from its recipe: the root filesystem and pip-install.sh."""
    h = hashlib.sha256()
    for part in (rootfs_inputs_hash().encode(), PIP_INSTALL_SH.read_bytes()):
        h.update(f"{len(part)}\0".encode())
        h.update(part)
    return h.hexdigest()[:12]


def _inputs_file(tarball: Path) -> Path:
    return tarball.with_name(tarball.name + ".inputs")


def build_base_tarball(tarball: Path = BASE_TARBALL) -> Path:
    """mmdebstrap the base root filesystem into ``tarball`` (atomically: a partial file never stays)."""
    mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap:
        raise DockerBedError("mmdebstrap not found (scripts/system_deps.sh installs it)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_name(f".{tarball.stem}.{os.getpid()}.partial.tar")
    cmd = [
        mmdebstrap,
        "--variant=apt",
        "--format=tar",
        f"--include={','.join(base_packages())}",
        '--aptopt=Acquire::Retries "3"',
        *(f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES),
        SUITE,
        str(partial),
        str(BASE_DIR / "sources.list"),
    ]
    try:
        _run_logged(cmd, LOG_DIR / "mmdebstrap.log", "mmdebstrap of the base root filesystem", timeout=900)
        partial.replace(tarball)
    finally:
        partial.unlink(missing_ok=True)
    _inputs_file(tarball).write_text(rootfs_inputs_hash() + "\n")
    return tarball


def _tarball_current(tarball: Path) -> bool:
    """The cached tarball exists and was made from the current recipe (an unrecorded recipe counts as current)."""
    if not tarball.is_file():
        return False
    inputs = _inputs_file(tarball)
    return not inputs.is_file() or inputs.read_text().strip() == rootfs_inputs_hash()


def ensure_base_image() -> str:
    """The base image exists (built from the cached tarball, mmdebstrapped first if needed); its tag."""
    ensure_dockerd()
    want = rootfs_inputs_hash()
    if image_label(BASE_TAG, INPUTS_LABEL) == want:
        return BASE_TAG
    with _lock("docker-bed-base"):
        if image_label(BASE_TAG, INPUTS_LABEL) == want:
            return BASE_TAG
        if not _tarball_current(BASE_TARBALL):
            build_base_tarball(BASE_TARBALL)
        changes = [*BASE_CHANGES, f"LABEL {INPUTS_LABEL}={want}"]
        cmd = [docker_cli(), "import", *(a for c in changes for a in ("--change", c)), str(BASE_TARBALL), BASE_TAG]
        _run_logged(cmd, LOG_DIR / "base-import.log", f"docker import of {BASE_TAG}", timeout=600)
    return BASE_TAG


# --- train image ---------------------------------------------------------------------------------


def _job_files() -> list[Path]:
    """Files of the jobs package to ship (sorted; caches and bytecode left out). Empty if it is absent."""
    if not JOBS_DIR.is_dir():
        return []
    return sorted(
        p
        for p in JOBS_DIR.rglob("*")
        if p.is_file()
        and not _IGNORED_PARTS.intersection(p.relative_to(JOBS_DIR).parts)
        and not p.name.endswith(_IGNORED_SUFFIXES)
    )


def train_hash() -> str:
    """12 hex digits over the train Dockerfile, the base recipe and every file of airflow_ml_provider/jobs/."""
    h = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)

    add("Dockerfile", TRAIN_DOCKERFILE.read_bytes())
    add("base", base_inputs_hash().encode())
    for p in _job_files():
        add(f"jobs/{p.relative_to(JOBS_DIR).as_posix()}", p.read_bytes())
    return h.hexdigest()[:12]


def train_image_tag() -> str:
    return f"{TRAIN_REPO}:{train_hash()}"


def host_ca_bundle() -> Path:
    """The CA bundle the host's pip trusts (TLS to the package index may be intercepted here)."""
    candidates = [os.environ.get(v) for v in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")]
    candidates += [_pip_config().get("cert"), "/etc/ssl/certs/ca-certificates.crt"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise DockerBedError("no CA bundle found (checked $PIP_CERT, $REQUESTS_CA_BUNDLE, pip's cert, /etc/ssl/certs)")


def _pip_config() -> dict[str, str]:
    """The host pip's effective settings (``pip config list``), keyed without their section."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    conf: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            conf[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    return conf


def pip_index_args() -> dict[str, str]:
    """Build args for the Dockerfile's index settings: the host's http(s) indexes (file:// ones stay here).

    $PIP_INDEX_URL / $PIP_EXTRA_INDEX_URL win over the pip configuration. Empty values mean pip's
    default index, which is what our machines use (their extra indexes are local file:// mirrors).
    """
    conf = _pip_config()
    index = os.environ.get("PIP_INDEX_URL") or conf.get("index-url", "")
    extras = os.environ.get("PIP_EXTRA_INDEX_URL") or conf.get("extra-index-url", "")

    def remote(url: str) -> bool:
        return url.startswith(("http://", "https://"))

    return {
        "PIP_INDEX": index if remote(index) else "",
        "PIP_EXTRA_INDEXES": " ".join(u for u in extras.split() if remote(u)),
    }


def _train_context(dest: Path) -> None:
    """The train image's own context files: the Dockerfile and airflow_ml_provider/{__init__.py,jobs/}."""
    shutil.copy2(TRAIN_DOCKERFILE, dest / "Dockerfile")
    pkg = dest / "airflow_ml_provider"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Only the jobs of airflow-ml-provider (this image has no Airflow)."""\n')
    for p in _job_files():
        target = pkg / "jobs" / p.relative_to(JOBS_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)


def ensure_built(tag: str, latest_tag: str, build: Callable[[str, str], None], name: str) -> str:
    """``tag`` exists (``build(tag, base_tag)`` under a file lock if not) and ``latest_tag`` points at it.

    :param name: short image name, for the lock and the build log (``<name>-build.log``).
    """
    ensure_dockerd()
    info = image_inspect(tag)
    if info is None:
        base = ensure_base_image()
        with _lock(f"docker-bed-{name}"):
            info = image_inspect(tag)
            if info is None:
                build(tag, base)
                info = image_inspect(tag)
                if info is None:
                    raise DockerBedError(f"docker build succeeded but {tag} does not exist")
    latest = image_inspect(latest_tag)
    if latest is None or latest.get("Id") != info.get("Id"):
        _run_logged([docker_cli(), "tag", tag, latest_tag], LOG_DIR / f"{name}-build.log", "docker tag", timeout=60)
    return tag


def ensure_train_image() -> str:
    """The train image for the current Dockerfile and jobs exists (built if not); its hash tag.

    ``airflow-ml-provider/train:latest`` is pointed at it too.
    """
    ensure_dockerd()
    return ensure_built(train_image_tag(), TRAIN_LATEST, _build_train, "train")


def docker_build(context: Callable[[Path], None], tag: str, latest: str, base: str, log: Path) -> None:
    """``docker build`` of the context ``context(dir)`` writes, FROM ``base``, tagged ``tag`` and ``latest``.

    The context also gets the files every image on the base shares: ``build-ca.crt`` (the host's CA
    bundle) and ``pip-install.sh``.

    Host networking and the pip index settings of this machine (pip runs in the build); the inputs
    hash (the tag's suffix) goes into a label so ``ensure_built`` can tell a stale image.
    """
    build_args = {"BASE_IMAGE": base, **pip_index_args()}
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder: no buildx needed with engine 20.10
    with tempfile.TemporaryDirectory(prefix="image-build-") as tmp:
        ctx = Path(tmp)
        shutil.copyfile(host_ca_bundle(), ctx / "build-ca.crt")
        shutil.copyfile(PIP_INSTALL_SH, ctx / "pip-install.sh")
        context(ctx)
        cmd = [
            docker_cli(),
            "build",
            "--network=host",
            "--force-rm",
            *(a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")),
            "--label",
            f"{INPUTS_LABEL}={tag.rsplit(':', 1)[1]}",
            "-t",
            tag,
            "-t",
            latest,
            str(ctx),
        ]
        _run_logged(cmd, log, f"docker build of {tag}", timeout=1800, env=env)


def _build_train(tag: str, base: str) -> None:
    docker_build(_train_context, tag, TRAIN_LATEST, base, LOG_DIR / "train-build.log")


# --- all -----------------------------------------------------------------------------------------


def ensure_all() -> dict[str, str]:
    """Engine up, swarm active, base and train images present; the image tags."""
    ensure_dockerd()
    ensure_swarm()
    base = ensure_base_image()
    train = ensure_train_image()
    return {"base": base, "train": train, "train_latest": TRAIN_LATEST}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.testbed.docker_bed", description="The Docker test bed.")
    parser.add_argument("command", choices=["ensure", "tags"], help="ensure: start/build what is missing; tags: print")
    args = parser.parse_args(argv)
    try:
        if args.command == "tags":
            tags = {"base": BASE_TAG, "train": train_image_tag(), "train_latest": TRAIN_LATEST}
        else:
            t0 = time.monotonic()
            tags = ensure_all()
            print(f"docker_bed: ready in {time.monotonic() - t0:.2f}s", file=sys.stderr)
    except DockerBedError as e:
        print(f"docker_bed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(tags))
    return 0


if __name__ == "__main__":
    sys.exit(main())

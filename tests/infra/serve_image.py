"""The serving image of ``MlflowDeployModelOperator``, built locally like the train image.

``airflow-ml-provider/serve:<hash>`` (also ``:latest``) is ``scripts/images/serve/Dockerfile`` on
top of the base image: a venv ``/opt/venv`` with ``mlflow-skinny`` (the dev venv's mlflow
version), scikit-learn, skops, LightGBM, pandas and pyarrow. ``<hash>`` is the first 12 hex
digits of a sha256 over the Dockerfile and the base recipe, so editing either gives a new tag
and a rebuild. The helpers (engine API, CA bundle, index settings, locks, logged runs) are
:mod:`tests.infra.docker_bed`'s; the build log goes to ``.testbed/images/serve-build.log``.

Command line::

    python -m tests.infra.serve_image        # prints the tag
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.infra.docker_bed import (
    IMAGES_DIR,
    INPUTS_LABEL,
    LOG_DIR,
    DockerBedError,
    _run_logged,
    base_inputs_hash,
    docker_cli,
    ensure_built,
    ensure_dockerd,
    host_ca_bundle,
    pip_index_args,
)

SERVE_DOCKERFILE = IMAGES_DIR / "serve" / "Dockerfile"
SERVE_REPO = "airflow-ml-provider/serve"
SERVE_LATEST = f"{SERVE_REPO}:latest"
BUILD_LOG = LOG_DIR / "serve-build.log"


def serve_hash() -> str:
    """12 hex digits over the serve Dockerfile and the base recipe."""
    h = hashlib.sha256()
    for name, data in (("Dockerfile", SERVE_DOCKERFILE.read_bytes()), ("base", base_inputs_hash().encode())):
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:12]


def serve_image_tag() -> str:
    return f"{SERVE_REPO}:{serve_hash()}"


def _build(tag: str, base: str) -> None:
    build_args = {"BASE_IMAGE": base, **pip_index_args()}
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder, as for the train image
    with tempfile.TemporaryDirectory(prefix="serve-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(SERVE_DOCKERFILE, ctx / "Dockerfile")
        shutil.copyfile(host_ca_bundle(), ctx / "build-ca.crt")
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
            SERVE_LATEST,
            str(ctx),
        ]
        _run_logged(cmd, BUILD_LOG, f"docker build of {tag}", timeout=1800, env=env)


def ensure_serve_image() -> str:
    """The serve image for the current Dockerfile exists (built if not); its hash tag.

    ``airflow-ml-provider/serve:latest`` is pointed at it too.
    """
    ensure_dockerd()
    return ensure_built(serve_image_tag(), SERVE_LATEST, _build, "serve")


def main() -> int:
    t0 = time.monotonic()
    try:
        tag = ensure_serve_image()
    except DockerBedError as e:
        print(f"serve_image: {e}", file=sys.stderr)
        return 1
    print(f"serve_image: ready in {time.monotonic() - t0:.2f}s", file=sys.stderr)
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The serving image of ``MlflowDeployModelOperator``, built locally like the train image.

``airflow-ml-provider/serve:<hash>`` (also ``:latest``) is ``scripts/images/serve/Dockerfile`` on
top of the base image: a venv ``/opt/venv`` with ``mlflow-skinny`` (the dev venv's mlflow
version), scikit-learn, skops, LightGBM, pandas and pyarrow. ``<hash>`` is the first 12 hex
digits of a sha256 over the Dockerfile and the base recipe, so editing either gives a new tag
and a rebuild. The helpers (engine API, CA bundle, index settings, locks, logged runs) are
:mod:`scripts.testbed.docker_bed`'s; the build log goes to ``.testbed/images/serve-build.log``.

Command line::

    python -m scripts.testbed.serve_image        # prints the tag
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

from scripts.testbed.docker_bed import (
    IMAGES_DIR,
    LOG_DIR,
    DockerBedError,
    base_inputs_hash,
    docker_build,
    ensure_built,
    ensure_dockerd,
    host_ca_bundle,
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


def _context(ctx: Path) -> None:
    shutil.copy2(SERVE_DOCKERFILE, ctx / "Dockerfile")
    shutil.copyfile(host_ca_bundle(), ctx / "build-ca.crt")


def _build(tag: str, base: str) -> None:
    docker_build(_context, tag, SERVE_LATEST, base, BUILD_LOG)


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

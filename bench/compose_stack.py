"""The compose stack (``docker-compose.yaml``): image build and start to all healthy, on the local dockerd.

Always: the images are built (a warm build: every layer from Docker's cache), the stack is started
on fresh volumes until every long-running service is healthy and both init services exited 0
(``first start``), stopped keeping its volumes, and started again (``restart``: the init finds
the database migrated and the source seeded). With ``BENCH_COMPOSE_COLD=1`` every image and
layer of the stack (labelled ``airflow-ml-provider.stack``) is deleted first (the locally built
Debian base stays), so the first build is cold: the six images from their Dockerfiles.

Run alone with ``python -m bench.compose_stack``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench.common import Row, run_alone

COLD = os.environ.get("BENCH_COMPOSE_COLD") == "1"


def _remove_images() -> int:
    """Delete every image labelled ``STACK_LABEL``: the stack's images, their layers and the Airflow
    build stage (kept untagged by the legacy builder), so nothing of the stack is cached; how many.

    Children go before their parents: a pass removes what it can, until a pass removes nothing.
    """
    import docker

    from scripts.testbed.compose_bed import STACK_LABEL

    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    removed = 0
    try:
        while True:
            before = removed
            for image in client.images.list(all=True, filters={"label": STACK_LABEL}):
                try:
                    client.images.remove(image.id, force=True, noprune=False)
                    removed += 1
                except docker.errors.APIError:  # still has children, or went with another one
                    pass
            if removed == before:
                return removed
    finally:
        client.close()


def run(workdir: Path) -> list[Row]:
    """Build (cold when asked), first start and restart of the stack; rows of seconds."""
    from scripts.testbed import compose_bed

    compose_bed.remove_stale()
    project = f"{compose_bed.TEST_PREFIX}{os.getpid()}"
    stack = compose_bed.prepare(workdir, project, {"STACK_SEED_ROWS": "3000"})
    cold_build = None
    if COLD:
        _remove_images()
        cold_build = stack.build()
    warm_build = stack.build()
    try:
        t0 = time.monotonic()
        stack.up()
        stack.wait_healthy()
        first = time.monotonic() - t0
        stack.compose("down", "-t", "30")
        t0 = time.monotonic()
        stack.up()
        stack.wait_healthy()
        restart = time.monotonic() - t0
    finally:
        stack.down()
        stack.env_file.unlink(missing_ok=True)
    rows = [
        Row(
            name="compose stack: start to all healthy, images built",
            ours=restart,
            baseline=first,
            unit="s",
            baseline_name="first start (empty volumes: migrate, seed)",
            note="`up -d`, 1 Celery worker, until every check passes; restart: after `down` keeping volumes",
        )
    ]
    if cold_build is not None:
        rows.append(
            Row(
                name="compose stack: build with the images in dockerd",
                ours=warm_build,
                baseline=cold_build,
                unit="s",
                baseline_name="cold build (no stack image in dockerd)",
                note="`docker-compose build` of the 6 images, legacy builder, on the local Debian base",
            )
        )
        rows.append(
            Row(
                name="compose stack: build + first start to all healthy",
                ours=warm_build + first,
                baseline=cold_build + first,
                unit="s",
                baseline_name="same from a cold build",
                note="what `docker-compose up -d --build` costs on a machine that has built it before vs a new one",
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(run_alone(run, "compose"))

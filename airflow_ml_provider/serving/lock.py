"""One deploy per endpoint at a time, whatever DAGs the deploys come from.

The lock of endpoint ``<e>`` is a created-but-never-started container named
``ml-serve-<e>-deploy-lock``, labelled with the endpoint, the role ``deploy-lock`` and its holder
(``dag/run/task[map]``). The Docker engine refuses a second container of one name, so taking it
is atomic across workers that share the engine, and it needs no other service. A deploy that
finds the lock held waits (at most ``timeout`` s) and then fails naming the holder. A lock older
than any deploy can take (``max_deploy_seconds + LOCK_GRACE``: its holder was killed hard) is
taken over: removed by id, so a lock another waiter took meanwhile is left alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import BackendError, ModelDeployError
from airflow_ml_provider.serving.endpoint_docker import (
    LABEL_ENDPOINT,
    LABEL_LOCK_OWNER,
    LABEL_ROLE,
    ROLE_LOCK,
    EndpointDocker,
    Log,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Seconds a deploy's lock may be older than the longest deploy before it counts as abandoned.
LOCK_GRACE = 120.0


def lock_name(endpoint: str) -> str:
    """The lock container's name for ``endpoint``."""
    return f"ml-serve-{endpoint}-deploy-lock"


def lock_owner(context: Context | dict[str, Any]) -> str:
    """Who takes the lock, as waiting deploys log it: ``dag/run/task[map]`` (or the process outside Airflow).

    :param context: the task's context (an empty one outside Airflow: a script, a benchmark).
    """
    ti = context.get("ti")
    if ti is None:
        return f"a deploy outside Airflow (pid {os.getpid()})"
    map_index = getattr(ti, "map_index", -1)
    suffix = f"[{map_index}]" if map_index not in (None, -1) else ""
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}{suffix}"


@contextlib.contextmanager
def endpoint_lock(
    docker: EndpointDocker,
    endpoint: str,
    *,
    image: str,
    owner: str,
    max_deploy_seconds: float,
    timeout: float,
    log: Log,
) -> Iterator[None]:
    """Hold ``endpoint``'s deploy lock for the block; released at the end, on failure too.

    :param docker: the endpoint's Docker engine.
    :param endpoint: the endpoint's name.
    :param image: an image on the host for the lock container (nothing runs in it).
    :param owner: the holder, from :func:`lock_owner`.
    :param max_deploy_seconds: the longest a deploy can hold the lock; older locks are taken over
        after :data:`LOCK_GRACE` more seconds.
    :param timeout: seconds to wait for another holder before failing with ModelDeployError.
    :param log: where waiting and takeovers are logged.
    """
    name = lock_name(endpoint)
    labels = {LABEL_ENDPOINT: endpoint, LABEL_ROLE: ROLE_LOCK, LABEL_LOCK_OWNER: owner}
    stale_after = max_deploy_seconds + LOCK_GRACE
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            lock = docker.create_unstarted(name, image, labels)
        except BackendError as e:
            raise ModelDeployError(f"Could not take the deploy lock of endpoint {endpoint!r}: {e}") from None
        if lock is not None:
            break
        held = docker.get(name)
        if held is None:
            continue  # released meanwhile: try again at once
        age = (time.time_ns() - held.created_ns) / 1e9
        holder = held.labels.get(LABEL_LOCK_OWNER, "an unknown deploy")
        if age > stale_after:
            log.warning(
                "Taking over the deploy lock of endpoint %s: held by %s for %.0f s, longer than a deploy takes.",
                endpoint, holder, age,
            )  # fmt: skip
            docker.discard(held)
            continue
        if time.monotonic() > deadline:
            raise ModelDeployError(
                f"Endpoint {endpoint!r} is being deployed by {holder} (for {age:.0f} s); gave up after "
                f"lock_timeout={timeout:g} s. Retry later, or remove the container {name} if no deploy runs."
            )
        if not waiting:
            log.info("Endpoint %s is being deployed by %s; waiting for it.", endpoint, holder)
            waiting = True
        time.sleep(1.0)
    try:
        yield
    finally:
        try:
            if not docker.discard(lock):
                log.warning("The deploy lock of endpoint %s was already gone (taken over?).", endpoint)
        except BackendError as e:
            log.error("Could not remove the deploy lock %s: %s", name, e)

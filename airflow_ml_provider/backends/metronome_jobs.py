"""Metronome's JSON: the job definition built from a :class:`~airflow_ml_provider.backends.base.JobSpec`,
and the run states read back from Metronome's answers. Pure functions, no I/O.

How a ``JobSpec`` becomes a Metronome job (:func:`job_definition`):

* ``run.docker.image`` = ``spec.image`` (``forcePullImage`` from the config).
* Command, ``cmd`` versus ``args``: Metronome has no entrypoint field. With ``entrypoint=None``
  the spec's ``command`` becomes ``run.args``: the Docker containerizer appends them to the
  image's ENTRYPOINT, exactly Docker's semantics, and no shell is involved. With an
  ``entrypoint``, ``run.cmd`` is ``shlex.join(entrypoint + command)``: Mesos runs ``cmd`` as
  ``/bin/sh -c <cmd>`` (replacing the image's entrypoint), so the image needs ``/bin/sh``, and the
  quoting makes the shell see exactly the argument list. Neither: the image's defaults run.
* ``working_dir``: with ``cmd`` it is a ``cd <dir> &&`` prefix; with ``args`` it is the Docker
  parameter ``workdir`` (``run.docker.parameters``; the agents must allow Docker parameters).
* ``env`` and ``secret_env`` go into ``run.env``. Metronome stores ``run.env`` in the job
  definition, which anyone allowed to read the job can see; plain secret values are therefore
  visible to Metronome readers (never to our logs). The production alternative is the DC/OS
  secret store: a ``secret_env`` value of the form ``dcos-secret:/path/in/store`` is sent as
  ``{"secret": "secretN"}`` with ``run.secrets = {"secretN": {"source": "/path/in/store"}}``, so
  the value itself never leaves DC/OS. Any other value is sent as it is.
* Resources: :meth:`~airflow_ml_provider.utils.resources.ResourceSpec.to_metronome` (``cpus``,
  ``mem``/``disk`` in MiB with Metronome's required defaults, ``gpus``).
* ``restart.policy = "NEVER"`` (a failed try is Airflow's to retry); ``maxLaunchDelay`` and
  ``user`` from the config.
* Labels: ``spec.all_labels()`` as they are. Metronome's label keys are free strings (the JSON
  schema only requires string values), so dotted keys like ``airflow-ml-provider.job-key`` are
  kept; the backend's ``find`` reads the spec hash and the installation namespace back from them.
* Mounts: ``run.volumes`` host-path volumes (``RO``/``RW``); named volumes are refused.
* Network: ``host`` -> ``{"mode": "host"}``, ``bridge`` -> ``{"mode": "container/bridge"}``, any
  other name -> ``{"mode": "container", "name": ...}``; ``none`` is refused (Metronome cannot run
  a job without a network).

Status mapping (:data:`RUN_STATES`): run ``INITIAL``/``STARTING`` -> pending, ``ACTIVE`` ->
running, ``SUCCESS`` -> succeeded, ``FAILED`` -> failed (also a stopped run).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_ml_provider.backends.base import FAILED, PENDING, RUNNING, SUCCEEDED, JobSpec
from airflow_ml_provider.backends.metronome_client import MetronomeConfig
from airflow_ml_provider.exceptions import InvalidSpecError

#: A ``secret_env`` value with this prefix names a DC/OS secret-store path instead of a value.
DCOS_SECRET_PREFIX = "dcos-secret:"  # noqa: S105 - a prefix, not a password
#: Metronome's job id pattern (``jobspec.schema.json``).
JOB_ID_PATTERN = re.compile(r"^([a-z0-9]+(-[a-z0-9]+)*)(\.([a-z0-9]+(-[a-z0-9]+)*))*$")
#: Metronome's run status -> the contract's job state.
RUN_STATES = {"INITIAL": PENDING, "STARTING": PENDING, "ACTIVE": RUNNING, "SUCCESS": SUCCEEDED, "FAILED": FAILED}


def _command(spec: JobSpec, run: dict[str, Any], docker: dict[str, Any]) -> None:
    command = list(spec.command) if spec.command is not None else []
    if spec.entrypoint is not None:
        cmd = shlex.join([*spec.entrypoint, *command])
        if spec.working_dir:
            cmd = f"cd {shlex.quote(spec.working_dir)} && {cmd}"
        run["cmd"] = cmd
        return
    if spec.command is not None:
        run["args"] = command
    if spec.working_dir:
        docker["parameters"] = [{"key": "workdir", "value": spec.working_dir}]


def _environment(spec: JobSpec, run: dict[str, Any]) -> None:
    env: dict[str, Any] = {k: str(v) for k, v in spec.env.items()}
    store: dict[str, dict[str, str]] = {}
    for name, value in spec.secret_env.items():
        value = str(value)
        if value.startswith(DCOS_SECRET_PREFIX):
            ref = f"secret{len(store)}"
            store[ref] = {"source": value[len(DCOS_SECRET_PREFIX) :]}
            env[name] = {"secret": ref}
        else:
            env[name] = value
    if env:
        run["env"] = env
    if store:
        run["secrets"] = store


def _volumes_and_network(spec: JobSpec, run: dict[str, Any]) -> None:
    volumes = []
    for mount in spec.mounts:
        if not mount.source.startswith("/"):
            raise InvalidSpecError(
                f"Mount source {mount.source!r}: Metronome mounts host paths only; give an absolute path."
            )
        volumes.append(
            {"containerPath": mount.target, "hostPath": mount.source, "mode": "RO" if mount.read_only else "RW"}
        )
    if volumes:
        run["volumes"] = volumes
    if spec.network is None:
        return
    if spec.network == "none":
        raise InvalidSpecError("network='none' is not supported on Metronome; use 'host', 'bridge' or a name.")
    if spec.network == "host":
        run["networks"] = [{"mode": "host"}]
    elif spec.network == "bridge":
        run["networks"] = [{"mode": "container/bridge"}]
    else:
        run["networks"] = [{"mode": "container", "name": spec.network}]


def job_definition(spec: JobSpec, config: MetronomeConfig) -> dict[str, Any]:
    """The Metronome job body for ``spec`` (secret values included: never log it).

    :param spec: the job.
    :param config: supplies ``force_pull``, ``max_launch_delay`` and ``user``.
    :raises InvalidSpecError: the key is not a Metronome id, a mount is not a host path, or
        ``network='none'``.
    """
    if not JOB_ID_PATTERN.match(spec.key):
        raise InvalidSpecError(
            f"Job key {spec.key!r} is not a valid Metronome job id: use lowercase letters, digits and dashes "
            "in dot-separated names, not starting or ending with a dash (e.g. 'ml-train-model-0a1b2c3d4e')."
        )
    run: dict[str, Any] = dict(spec.resources.to_metronome())
    docker: dict[str, Any] = {"image": spec.image, "forcePullImage": bool(config.force_pull)}
    run["docker"] = docker
    _command(spec, run, docker)
    _environment(spec, run)
    run["restart"] = {"policy": "NEVER"}
    run["maxLaunchDelay"] = int(config.max_launch_delay)
    if config.user:
        run["user"] = config.user
    _volumes_and_network(spec, run)
    return {
        "id": spec.key,
        "description": f"airflow-ml-provider job {spec.key}",
        "labels": spec.all_labels(),
        "run": run,
    }


def newest_run(runs: Iterable[Mapping[str, Any]], field: str) -> Mapping[str, Any] | None:
    """The run with the latest ``field`` timestamp (Metronome's format sorts as text)."""
    return max(runs, key=lambda r: str(r.get(field) or r.get("createdAt") or ""), default=None)


def finished_runs(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The successful and failed runs in a job's ``history`` (``embed=history``)."""
    history = job.get("history") or {}
    return [*(history.get("successfulFinishedRuns") or []), *(history.get("failedFinishedRuns") or [])]


def task_note(run: Mapping[str, Any]) -> str:
    """``"; task TASK_RUNNING"`` from a run's tasks, or empty."""
    tasks = run.get("tasks") or []
    states = ", ".join(str(t.get("status")) for t in tasks if isinstance(t, Mapping) and t.get("status"))
    return f"; task {states}" if states else ""

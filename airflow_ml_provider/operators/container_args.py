"""The container operator's argument checks and messages: pure functions, cheap to import.

``parse_mounts`` and ``exit_codes`` run in the operator's constructor (DAG parse time) when the
values are static, and again at execute time after rendering; ``failure_message``,
``foreign_job_message`` and ``resources_text`` turn a job's outcome, owner and limits into the
words the task log shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError

if TYPE_CHECKING:
    from airflow_ml_provider.backends.base import JobStatus, Mount
    from airflow_ml_provider.utils.resources import ResourceSpec


def parse_mounts(mounts: Sequence[Any] | None) -> list[Mount]:
    """Accept ``"/host:/ctr"``, ``"/host:/ctr:ro"``, ``{"source", "target", "read_only"}`` or Mount.

    :param mounts: the operator's ``mounts`` argument, rendered.
    :raises InvalidSpecError: an entry is not a mount, or its target is not an absolute path.
    """
    from airflow_ml_provider.backends.base import Mount

    parsed = []
    for item in mounts or ():
        if isinstance(item, Mount):
            parsed.append(item)
            continue
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) in (2, 3) and (len(parts) == 2 or parts[2] in ("ro", "rw")):
                item = {"source": parts[0], "target": parts[1], "read_only": len(parts) == 3 and parts[2] == "ro"}
        if not isinstance(item, Mapping) or not {"source", "target"} <= set(item):
            raise InvalidSpecError(f'mounts entry {item!r} is not a mount; use "/data/lake:/data:ro" or a dict.')
        target = str(item["target"])
        if not target.startswith("/"):
            raise InvalidSpecError(f"mounts target {target!r} must be an absolute path inside the container.")
        parsed.append(Mount(str(item["source"]), target, bool(item.get("read_only", False))))
    return parsed


def exit_codes(value: int | Sequence[int] | None) -> tuple[int, ...]:
    """``skip_on_exit_code`` as a tuple of exit codes 1-255 (``None`` -> none).

    :raises InvalidSpecError: a code is not a whole number from 1 to 255.
    """
    if value is None:
        return ()
    codes = (value,) if isinstance(value, int) else tuple(value)
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 < c < 256 for c in codes):
        raise InvalidSpecError(f"skip_on_exit_code={value!r} must be exit codes 1-255, e.g. skip_on_exit_code=99.")
    return codes


def human_bytes(size: int) -> str:
    """``64 MiB (67108864 bytes)``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:g} {unit} ({size} bytes)"
    return f"{size} bytes"


def resources_text(resources: ResourceSpec) -> str:
    """The limits that are set, ``cpus=2, memory=...``, or ``scheduler defaults``."""
    parts = {k: v for k, v in resources._asdict().items() if v}
    return ", ".join(f"{k}={v}" for k, v in parts.items()) or "scheduler defaults"


def foreign_job_message(where: str, theirs: str, ours: str) -> str:
    """Why the task will not touch the job under its key: another installation's namespace is on it.

    :param where: the job as ``backend.describe`` names it.
    :param theirs: the namespace label on the job.
    :param ours: this installation's namespace.
    """
    return (
        f"{where} belongs to another Airflow installation: it carries namespace {theirs!r}, this "
        f"installation's is {ours!r}; left it running. Installations sharing a container engine need "
        "distinct namespaces: set the connection extra 'namespace' or the Airflow Variable "
        "ml_provider_namespace to a value no other installation uses."
    )


def failure_message(where: str, status: JobStatus, tail: list[str], memory: int | None) -> str:
    """Why the job failed (OOM with its limit, gone, or the exit code) and its last log lines.

    :param where: the job as ``backend.describe`` names it.
    :param status: its final status.
    :param tail: its last log lines, already redacted.
    :param memory: its memory limit in bytes, if any.
    """
    if status.oom_killed:
        limit = f" of {human_bytes(memory)}" if memory else ""
        head = f"{where} was killed for exceeding its memory limit{limit} (OOM, exit code {status.exit_code})"
        hint = "; raise resources['memory'] or reduce the job's memory use"
    elif status.state == "gone":
        head, hint = f"{where} disappeared before it finished ({status.message})", "; something removed it"
    elif status.exit_code is None and status.message:
        head, hint = f"{where} failed: {status.message}", ""  # e.g. "it never ran: Swarm rejected its task (…)"
    else:
        code = "an unknown exit code" if status.exit_code is None else f"exit code {status.exit_code}"
        head, hint = f"{where} failed with {code}", ""
        if status.message:
            head += f" ({status.message})"
    lines = "\n".join(f"  | {line}" for line in tail) if tail else "  (no output)"
    return f"{head}{hint}. Last {len(tail)} log lines:\n{lines}"

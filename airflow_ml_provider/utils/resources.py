"""One validated resource spec for container jobs, mapped to each scheduler's own terms.

Units follow Kubernetes, so a value means the same thing everywhere:

* ``cpus``: fractional CPUs (``0.5``, ``2``). Docker gets a hard cap (``nano_cpus``), not a
  relative weight (``cpu_shares``).
* ``memory`` and ``disk``: bytes as an int, or a string with a decimal (``K M G T P``, powers of
  1000) or binary (``Ki Mi Gi Ti Pi``, powers of 1024) suffix: ``"512Mi"``, ``"4G"``, ``"1.5Gi"``.
  Docker's lower-case ``"4g"`` is refused rather than guessed (Docker means GiB, Kubernetes GB).
* ``gpus``: a whole number; 0 means none.

Invalid values raise :class:`~airflow_ml_provider.exceptions.InvalidSpecError` naming the field
and an accepted example, at DAG parse time when the operator's arguments are static.
(A NamedTuple, not a dataclass: operator modules import this at DAG parse time.)
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from airflow_ml_provider.exceptions import InvalidSpecError

_UNITS = {
    "": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
MIB = 1024**2
#: Metronome requires cpus, mem and disk on every job; these fill in what the spec leaves open.
METRONOME_DEFAULTS = {"cpus": 1.0, "mem": 128, "disk": 0}


def parse_bytes(value: Any, field: str) -> int:
    """Parse a byte quantity (int bytes, or ``"512Mi"``/``"4G"``) into bytes; must be > 0.

    :param value: the value given by the DAG author.
    :param field: the argument's name, for the error message.
    """
    example = f'{field}="512Mi" (MiB), {field}="4G" (GB) or {field}=1073741824 (bytes)'
    if isinstance(value, bool):
        raise InvalidSpecError(f"{field}={value!r} is not a size; use e.g. {example}.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0 or value != int(value):
            raise InvalidSpecError(f"{field}={value!r} must be a positive whole number of bytes; use e.g. {example}.")
        return int(value)
    if not isinstance(value, str):
        raise InvalidSpecError(f"{field}={value!r} is not a size; use e.g. {example}.")
    match = _QUANTITY.match(value)
    if not match:
        raise InvalidSpecError(f"{field}={value!r} cannot be parsed; use e.g. {example}.")
    number, unit = match.groups()
    if unit not in _UNITS:
        hint = ""
        if unit.lower() in ("k", "m", "g", "t", "kb", "mb", "gb", "tb", "b"):
            hint = (
                f" Suffixes are case-sensitive: '{number}{unit[0].upper()}i' is binary (powers of 1024), "
                f"'{number}{unit[0].upper()}' decimal."
            )
        raise InvalidSpecError(
            f"{field}={value!r} has the unknown unit {unit!r}; use one of "
            f"{', '.join(u for u in _UNITS if u)} (e.g. {example}).{hint}"
        )
    size = float(number) * _UNITS[unit]
    if size < 1:
        raise InvalidSpecError(f"{field}={value!r} must be positive; use e.g. {example}.")
    return math.ceil(size)


class ResourceSpec(NamedTuple):
    """CPU, memory, GPU and disk for one container job; ``None`` leaves it to the scheduler.

    :param cpus: fractional CPUs, > 0.
    :param memory: bytes, > 0 (hard limit; exceeding it is an OOM kill).
    :param gpus: whole GPUs, >= 0.
    :param disk: bytes of scratch disk, > 0 (honoured by Metronome; Docker has no portable cap).
    """

    cpus: float | None = None
    memory: int | None = None
    gpus: int = 0
    disk: int | None = None

    @classmethod
    def of(cls, cpus: Any = None, memory: Any = None, gpus: Any = 0, disk: Any = None) -> ResourceSpec:
        """Validate raw values (numbers or strings such as ``"512Mi"``) into a spec."""
        return cls(
            cpus=None if cpus is None else _parse_cpus(cpus),
            memory=None if memory is None else parse_bytes(memory, "memory"),
            gpus=_parse_gpus(gpus),
            disk=None if disk is None else parse_bytes(disk, "disk"),
        )

    @classmethod
    def from_value(cls, value: ResourceSpec | dict[str, Any] | None) -> ResourceSpec:
        """Accept a spec, a dict like ``{"cpus": 2, "memory": "4Gi"}``, or ``None`` (no limits)."""
        if value is None:
            return cls()
        if isinstance(value, ResourceSpec):
            return cls.of(*value)
        if isinstance(value, dict):
            unknown = set(value) - set(cls._fields)
            if unknown:
                raise InvalidSpecError(
                    f"Unknown resource field(s) {sorted(unknown)}; use cpus, memory, gpus and disk, "
                    'e.g. {"cpus": 2, "memory": "4Gi", "gpus": 1}.'
                )
            return cls.of(**value)
        raise InvalidSpecError(
            f'resources={value!r} must be a dict like {{"cpus": 2, "memory": "4Gi"}} or a ResourceSpec.'
        )

    def to_docker(self) -> dict[str, Any]:
        """Keyword arguments for ``containers.create``: ``nano_cpus`` (hard cap), ``mem_limit``, GPUs.

        GPUs are given as plain ``device_requests`` dicts (the Docker API's own shape), so this
        module does not import the docker SDK.
        """
        kwargs: dict[str, Any] = {}
        if self.cpus is not None:
            kwargs["nano_cpus"] = round(self.cpus * 1e9)
        if self.memory is not None:
            kwargs["mem_limit"] = self.memory
        if self.gpus:
            kwargs["device_requests"] = [{"Driver": "", "Count": self.gpus, "Capabilities": [["gpu"]]}]
        return kwargs

    def to_swarm(self) -> dict[str, Any]:
        """Keyword arguments for ``docker.types.Resources``: limits, and GPUs as generic resources."""
        kwargs: dict[str, Any] = {}
        if self.cpus is not None:
            kwargs["cpu_limit"] = round(self.cpus * 1e9)
        if self.memory is not None:
            kwargs["mem_limit"] = self.memory
        if self.gpus:
            kwargs["generic_resources"] = {"gpu": self.gpus}
        return kwargs

    def to_metronome(self) -> dict[str, Any]:
        """The ``run`` fields of a Metronome job: ``cpus``, ``mem`` and ``disk`` in MiB, ``gpus``."""
        fields: dict[str, Any] = dict(METRONOME_DEFAULTS)
        if self.cpus is not None:
            fields["cpus"] = self.cpus
        if self.memory is not None:
            fields["mem"] = math.ceil(self.memory / MIB)
        if self.disk is not None:
            fields["disk"] = math.ceil(self.disk / MIB)
        fields["gpus"] = self.gpus
        return fields


def _parse_cpus(value: Any) -> float:
    example = 'cpus=0.5 or cpus=2 (or "1.5")'
    if isinstance(value, bool):
        raise InvalidSpecError(f"cpus={value!r} is not a number of CPUs; use e.g. {example}.")
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"cpus={value!r} is not a number of CPUs; use e.g. {example}.") from None
    if not math.isfinite(cpus) or cpus <= 0:
        raise InvalidSpecError(f"cpus={value!r} must be a positive number; use e.g. {example}.")
    if cpus < 0.001:
        raise InvalidSpecError(f"cpus={value!r} is below the smallest schedulable share 0.001; use e.g. {example}.")
    return cpus


def _parse_gpus(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise InvalidSpecError(f"gpus={value!r} must be a whole number >= 0, e.g. gpus=1.")
    try:
        gpus = float(value)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"gpus={value!r} must be a whole number >= 0, e.g. gpus=1.") from None
    if not math.isfinite(gpus) or gpus < 0 or gpus != int(gpus):
        raise InvalidSpecError(f"gpus={value!r} must be a whole number >= 0, e.g. gpus=1.")
    return int(gpus)

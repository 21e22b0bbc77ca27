"""ResourceSpec: validation with actionable errors, and the per-backend mappings."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.utils.resources import ResourceSpec, parse_bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1073741824, 1073741824),
        ("512Mi", 512 * 1024**2),
        ("4G", 4 * 10**9),
        ("1.5Gi", 3 * 512 * 1024**2),
        ("100K", 100_000),
        (" 2 Ti ", 2 * 1024**4),
        ("300", 300),
    ],
)
def test_parse_bytes(value: Any, expected: int) -> None:
    assert parse_bytes(value, "memory") == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("4g", "case-sensitive: '4Gi' is binary"),
        ("4GB", "unknown unit 'GB'"),
        ("lots", "cannot be parsed"),
        ("-1Gi", "cannot be parsed"),
        (0, "positive whole number"),
        (-5, "positive whole number"),
        (1.5, "positive whole number"),
        (float("nan"), "positive whole number"),
        (True, "not a size"),
        ([1], "not a size"),
        ("0Mi", "must be positive"),
    ],
)
def test_bad_sizes_name_the_field_and_an_example(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_bytes(value, "memory")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("memory=")
    assert 'memory="512Mi"' in message


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"cpus": 0}, "cpus=0 must be a positive number"),
        ({"cpus": -1}, "must be a positive number"),
        ({"cpus": "two"}, "cpus='two' is not a number"),
        ({"cpus": float("inf")}, "must be a positive number"),
        ({"cpus": 0.0001}, "smallest schedulable share"),
        ({"gpus": -1}, "gpus=-1 must be a whole number >= 0"),
        ({"gpus": 0.5}, "whole number"),
        ({"gpus": True}, "whole number"),
        ({"disk": "10 parsecs"}, "disk="),
    ],
)
def test_bad_specs(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"e\.g\.") as info:
        ResourceSpec.of(**kw)
    assert fragment in str(info.value)


def test_from_value() -> None:
    assert ResourceSpec.from_value(None) == ResourceSpec()
    spec = ResourceSpec.from_value({"cpus": "1.5", "memory": "4Gi", "gpus": 1, "disk": "10G"})
    assert spec == ResourceSpec(cpus=1.5, memory=4 * 1024**3, gpus=1, disk=10 * 10**9)
    assert ResourceSpec.from_value(spec) == spec
    with pytest.raises(InvalidSpecError, match=r"Unknown resource field\(s\) \['ram'\]"):
        ResourceSpec.from_value({"ram": "4Gi"})
    with pytest.raises(InvalidSpecError, match="must be a dict"):
        ResourceSpec.from_value("4 cpus")  # type: ignore[arg-type]


def test_docker_mapping_is_a_hard_cap() -> None:
    spec = ResourceSpec.of(cpus=0.5, memory="512Mi", gpus=2)
    assert spec.to_docker() == {
        "nano_cpus": 500_000_000,
        "mem_limit": 512 * 1024**2,
        "device_requests": [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}],
    }
    assert "cpu_shares" not in spec.to_docker()
    assert ResourceSpec().to_docker() == {}


def test_swarm_mapping() -> None:
    assert ResourceSpec.of(cpus=2, memory="1Gi", gpus=1).to_swarm() == {
        "cpu_limit": 2_000_000_000,
        "mem_limit": 1024**3,
        "generic_resources": {"gpu": 1},
    }


def test_metronome_mapping_in_mib_with_required_defaults() -> None:
    assert ResourceSpec.of(cpus=1.5, memory="1G", disk="2Gi", gpus=1).to_metronome() == {
        "cpus": 1.5,
        "mem": 954,  # 1e9 bytes rounded up to whole MiB
        "disk": 2048,
        "gpus": 1,
    }
    assert ResourceSpec().to_metronome() == {"cpus": 1.0, "mem": 128, "disk": 0, "gpus": 0}

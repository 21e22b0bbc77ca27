"""Pure helpers of the Docker and Swarm backends: log timestamps and cursors, stream re-splitting,
result archives, state mapping, job keys, what ``submit`` hands the docker SDK and how both backends
map the engine's refusal to create a job (mocked client; the real engine is in tests/integration)."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import tarfile
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_ml_provider.backends.base import (
    FAILED,
    LABEL_KEY,
    LABEL_NAMESPACE,
    PENDING,
    RUNNING,
    SUCCEEDED,
    JobHandle,
    JobSpec,
    JobStatus,
    is_namespace,
    job_key,
)
from airflow_ml_provider.backends.docker_common import (
    MAX_RESULT_BYTES,
    WATERMARK_LAG_NS,
    DockerConfig,
    iter_lines,
    lines_after,
    read_result_archive,
    split_timestamped,
)
from airflow_ml_provider.backends.docker_engine import DockerBackend, docker_state
from airflow_ml_provider.backends.metronome_jobs import JOB_ID_PATTERN
from airflow_ml_provider.backends.swarm import SwarmBackend, task_status
from airflow_ml_provider.exceptions import BackendError, InvalidSpecError, JobExistsError, JobResultError
from airflow_ml_provider.operators.container_args import failure_message
from airflow_ml_provider.utils.resources import ResourceSpec

#: 2026-11-23T16:20:21Z in nanoseconds.
T0 = int(datetime(2026, 11, 23, 16, 20, 21, tzinfo=timezone.utc).timestamp()) * 10**9


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano as Docker writes it: trailing zeros of the fraction trimmed."""
    seconds, frac = divmod(ns, 10**9)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def docker_output(entries: list[tuple[int, str]]) -> bytes:
    """What ``GET /containers/{id}/logs?timestamps=1`` returns (demultiplexed) for these lines."""
    return "".join(f"{rfc3339nano(ns)} {line}\n" for ns, line in entries).encode()


# --- split_timestamped -----------------------------------------------------------------------------


def test_split_timestamped_nanoseconds_and_trimmed_fractions() -> None:
    raw = (
        b"2026-11-23T16:20:21.123456789Z first line\n"
        b"2026-11-23T16:20:21.9Z trimmed to one digit\n"
        b"2026-11-23T16:20:22Z no fraction at all\n"
        b"2026-11-23T16:20:22.000000001Z  two spaces kept\n"
        b"2026-11-23T16:20:22.5Z \n"
    )
    assert split_timestamped(raw) == [
        (T0 + 123456789, "first line"),
        (T0 + 900_000_000, "trimmed to one digit"),
        (T0 + 10**9, "no fraction at all"),
        (T0 + 10**9 + 1, " two spaces kept"),
        (T0 + 1_500_000_000, ""),
    ]


def test_split_timestamped_lines_without_stamps_keep_the_previous_stamp() -> None:
    raw = b"orphan before any stamp\n2026-11-23T16:20:21.25Z stamped\ncontinuation without stamp\n"
    assert split_timestamped(raw) == [
        (0, "orphan before any stamp"),
        (T0 + 250_000_000, "stamped"),
        (T0 + 250_000_000, "continuation without stamp"),
    ]


def test_split_timestamped_invalid_utf8_and_empty() -> None:
    assert split_timestamped(b"") == []
    [(ns, line)] = split_timestamped(b"2026-11-23T16:20:21Z caf\xe9\n")
    assert ns == T0
    assert line == "caf\ufffd"


@given(st.integers(min_value=0, max_value=4_000_000_000 * 10**9 - 1))
def test_split_timestamped_round_trips_every_nanosecond_stamp(ns: int) -> None:
    assert split_timestamped(f"{rfc3339nano(ns)} x\n".encode()) == [(ns, "x")]


# --- lines_after -------------------------------------------------------------------------------------


def test_lines_after_from_the_start_and_the_cursor_shape() -> None:
    entries = [(T0, "a"), (T0 + 1, "b"), (T0 + 1, "c")]
    lines, cursor = lines_after(entries, None)
    assert lines == ["a", "b", "c"]
    # watermark one second behind the newest stamp; all three lines are at or after it
    assert cursor == [T0 + 1 - WATERMARK_LAG_NS, 3]
    assert json.loads(json.dumps(cursor)) == cursor  # JSON-native
    assert lines_after(entries, cursor) == ([], cursor)
    assert lines_after([], None) == ([], [-1, 0])


def test_lines_after_same_timestamp_across_calls() -> None:
    same = T0 + 7
    lines, cursor = lines_after([(T0, "a"), (same, "b1"), (same, "b2")], None)
    assert lines == ["a", "b1", "b2"]
    lines, cursor = lines_after([(T0, "a"), (same, "b1"), (same, "b2"), (same, "b3")], cursor)
    assert lines == ["b3"]
    lines, cursor = lines_after(
        [(T0, "a"), (same, "b1"), (same, "b2"), (same, "b3"), (same + 1, "c"), (same + 1, "d")], cursor
    )
    assert lines == ["c", "d"]


def test_lines_after_watermark_moves_and_old_lines_drop_out() -> None:
    first = [(T0, "a"), (T0 + 2 * WATERMARK_LAG_NS, "b")]
    lines, cursor = lines_after(first, None)
    assert lines == ["a", "b"]
    assert cursor == [T0 + WATERMARK_LAG_NS, 1]  # "a" is behind the watermark now
    # Docker's since (a millisecond before the watermark) no longer returns "a"
    lines, cursor = lines_after([(T0 + 2 * WATERMARK_LAG_NS, "b"), (T0 + 2 * WATERMARK_LAG_NS + 5, "c")], cursor)
    assert lines == ["c"]


def test_lines_after_cursor_survives_json_round_trip_with_strings() -> None:
    lines, cursor = lines_after([(T0, "a"), (T0, "b")], json.loads(json.dumps([str(T0), "1"])))
    assert lines == ["b"]
    assert cursor == [T0, 2]


_STEPS = st.sampled_from([0, 0, 0, 1, 999, 500_000, 999_999, 1_000_000, 1_000_001, 3_000_000, 10**9])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(_STEPS, min_size=0, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
    margin_ns=st.sampled_from([0, 1, 1_000_000, 5_000_000]),
)
def test_lines_after_chunked_reads_with_inclusive_since_give_every_line_once(
    steps: list[int], cuts: list[int], margin_ns: int
) -> None:
    """Split the log at arbitrary points; each read starts at Docker's inclusive ``since``
    (the cursor's stamp minus a margin), so it overlaps the previous read at the boundary."""
    entries, ns = [], T0
    for i, step in enumerate(steps):
        ns += step
        entries.append((ns, f"line {i}"))
    seen: list[str] = []
    cursor: Any = None
    for end in [*sorted(min(c, len(entries)) for c in cuts), len(entries)]:
        written = entries[:end]
        since = int(cursor[0]) - margin_ns if cursor and int(cursor[0]) > 0 else None
        chunk = [e for e in written if since is None or e[0] >= since]
        lines, cursor = lines_after(chunk, cursor)
        seen += lines
    assert seen == [line for _, line in entries]


# --- iter_lines --------------------------------------------------------------------------------------


def test_iter_lines_rejoins_chunks_cut_mid_line() -> None:
    chunks = [b"alp", b"ha\nbe", b"", b"ta\n", b"\n", b"gam", b"ma\ndelta\n"]
    assert list(iter_lines(iter(chunks))) == ["alpha", "beta", "", "gamma", "delta"]


def test_iter_lines_crlf_and_trailing_partial_line() -> None:
    chunks = [b"one\r", b"\ntwo\r\nthr", b"ee"]
    assert list(iter_lines(iter(chunks))) == ["one", "two", "three"]


def test_iter_lines_multibyte_character_split_across_chunks() -> None:
    data = "héllo wörld\n✓ done".encode()
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert list(iter_lines(iter(chunks))) == ["héllo wörld", "✓ done"]


def test_iter_lines_empty_stream() -> None:
    assert list(iter_lines(iter([]))) == []
    assert list(iter_lines(iter([b""]))) == []


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=20)), st.data())
def test_iter_lines_any_cut_points(lines: list[str], data: st.DataObject) -> None:
    blob = "".join(f"{line}\n" for line in lines).encode()
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=10)))
    bounds = [0, *cuts, len(blob)]
    chunks = [blob[a:b] for a, b in itertools.pairwise(bounds)]
    assert list(iter_lines(iter(chunks))) == lines


# --- read_result_archive -----------------------------------------------------------------------------


def tar_of(members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar like ``get_archive`` returns; ``None`` content means a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def chunked(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_read_result_archive_parses_the_json_file() -> None:
    doc = {"auc": 0.91, "rows": 12, "model": "s3://b/m.txt", "nested": [1, None, "x"]}
    assert read_result_archive(chunked(tar_of([("result.json", json.dumps(doc).encode())])), "/r.json") == doc


def test_read_result_archive_invalid_json_names_the_path() -> None:
    with pytest.raises(JobResultError, match=r"/airflow/xcom/result\.json is not valid JSON") as e:
        read_result_archive(iter([tar_of([("result.json", b"{not json")])]), "/airflow/xcom/result.json")
    assert "{not json" in str(e.value)


def test_read_result_archive_too_big() -> None:
    big = b'"' + b"x" * MAX_RESULT_BYTES + b'"'
    with pytest.raises(
        JobResultError, match=r"/out/r\.json is \d+ bytes, over the limit of 1048576 bytes \(1 MiB\)"
    ) as e:
        read_result_archive(chunked(tar_of([("r.json", big)]), 65536), "/out/r.json")
    assert "URI" in str(e.value)
    exactly = b'"' + b"x" * (MAX_RESULT_BYTES - 2) + b'"'
    assert len(read_result_archive(iter([tar_of([("r.json", exactly)])]), "/r")) == MAX_RESULT_BYTES - 2


def test_read_result_archive_not_a_regular_file() -> None:
    with pytest.raises(JobResultError, match="is a directory, not a regular file"):
        read_result_archive(iter([tar_of([("result.json", None)])]), "/airflow/xcom/result.json")


def test_read_result_archive_directory_with_files_is_refused() -> None:
    archive = tar_of([("result.json", None), ("result.json/part-0.json", b'{"a": 1}')])
    with pytest.raises(JobResultError, match="not a regular file"):
        read_result_archive(iter([archive]), "/airflow/xcom/result.json")


def test_read_result_archive_refuses_a_huge_file_without_reading_it_all() -> None:
    size = 50 * MAX_RESULT_BYTES
    header = tarfile.TarInfo("result.json")
    header.size = size
    consumed = 0

    def stream() -> Iterator[bytes]:
        nonlocal consumed
        chunks = [header.tobuf(format=tarfile.GNU_FORMAT)] + [b" " * 65536] * (size // 65536)
        for chunk in chunks:
            consumed += len(chunk)
            yield chunk

    with pytest.raises(JobResultError, match="bytes"):
        read_result_archive(stream(), "/airflow/xcom/result.json")
    assert consumed <= 2 * MAX_RESULT_BYTES


# --- docker_state --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Status": "created", "ExitCode": 0}, JobStatus(PENDING)),
        ({"Status": "running", "Running": True, "ExitCode": 0}, JobStatus(RUNNING)),
        ({"Status": "paused", "ExitCode": 0}, JobStatus(RUNNING)),
        ({"Status": "restarting", "ExitCode": 0}, JobStatus(RUNNING)),
        ({"Status": "exited", "ExitCode": 0}, JobStatus(SUCCEEDED, 0)),
        ({"Status": "exited", "ExitCode": 1, "Error": ""}, JobStatus(FAILED, 1)),
        ({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, JobStatus(FAILED, 137, True)),
        ({"Status": "exited", "ExitCode": 0, "OOMKilled": True}, JobStatus(FAILED, 0, True)),
        ({"Status": "dead", "ExitCode": 128, "Error": "driver failed"}, JobStatus(FAILED, 128, False, "driver failed")),
        (
            {"Status": "created", "ExitCode": 127, "Error": "exec: no such file"},
            JobStatus(PENDING, message="exec: no such file"),
        ),
    ],
)
def test_docker_state(state: dict[str, Any], expected: JobStatus) -> None:
    assert docker_state({"State": state}) == expected


def test_docker_state_unknown_and_missing() -> None:
    assert docker_state({}).state == PENDING
    odd = docker_state({"State": {"Status": "weird"}})
    assert odd.state == PENDING
    assert "weird" in odd.message


# --- task_status (swarm) -------------------------------------------------------------------------------


def task(state: str, created: str = "2026-11-23T16:20:21.5Z", exit_code: int | None = None, **status: Any) -> dict:
    container = {"ContainerID": "c" * 64, "PID": 0}
    if exit_code is not None:
        container["ExitCode"] = exit_code
    return {
        "ID": f"t-{created}",
        "CreatedAt": created,
        "Status": {"State": state, "ContainerStatus": container, **status},
    }


def test_task_status_no_tasks() -> None:
    assert task_status([]) == JobStatus(PENDING, message="no task scheduled yet")


@pytest.mark.parametrize(
    "state", ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"]
)
def test_task_status_pending_states(state: str) -> None:
    got = task_status([task(state, Message="pending task scheduling")])
    assert got.state == PENDING
    assert got.message == "pending task scheduling"


def test_task_status_running_and_complete() -> None:
    assert task_status([task("running")]) == JobStatus(RUNNING)
    assert task_status([task("complete", exit_code=0, Message="finished")]) == JobStatus(SUCCEEDED, 0)
    assert task_status([task("complete")]) == JobStatus(SUCCEEDED, 0)


def test_task_status_failed_with_exit_code_and_err() -> None:
    got = task_status([task("failed", exit_code=3, Err="task: non-zero exit (3)", Message="started")])
    assert got == JobStatus(FAILED, 3, False, "task failed: task: non-zero exit (3)")
    rejected = task_status([task("rejected", Err="No such image: nope:1")])
    assert (rejected.state, rejected.exit_code) == (FAILED, None)
    assert "rejected" in rejected.message
    assert "No such image" in rejected.message
    assert task_status([task("shutdown")]).state == FAILED


def test_task_status_rejected_task_never_ran_and_has_no_exit_code() -> None:
    """Issue 9 item 13: Swarm reports a placeholder ExitCode 0 with no container for a rejected task."""
    rejected = task("rejected", Err="No such image: nope:1", Message="preparing")
    rejected["Status"]["ContainerStatus"] = {"ContainerID": "", "PID": 0, "ExitCode": 0}
    got = task_status([rejected])
    assert (got.state, got.exit_code) == (FAILED, None)
    assert got.message.startswith("it never ran: Swarm rejected its task (No such image: nope:1); check the image")
    text = failure_message("swarm service k (abc)", got, [], None)
    assert text.startswith("swarm service k (abc) failed: it never ran: Swarm rejected its task (No such image")
    assert "exit code" not in text


def test_task_status_newest_task_wins() -> None:
    old = task("failed", "2026-11-23T16:20:21.100000001Z", exit_code=1, Err="boom")
    new = task("running", "2026-11-23T16:20:25.200000002Z")
    assert task_status([old, new]) == JobStatus(RUNNING)
    assert task_status([new, old]) == JobStatus(RUNNING)
    done = task("complete", "2026-11-23T16:21:00.300000003Z", exit_code=0)
    assert task_status([old, done, new]).state == SUCCEEDED


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("2026-11-23T16:20:21.5Z", "2026-11-23T16:20:21.51Z"),
        ("2026-11-23T16:20:21Z", "2026-11-23T16:20:21.3Z"),
    ],
)
def test_task_status_newest_task_wins_with_trimmed_fractions(older: str, newer: str) -> None:
    tasks = [task("failed", older, exit_code=1, Err="old try"), task("complete", newer, exit_code=0)]
    assert task_status(tasks) == JobStatus(SUCCEEDED, 0)


# --- job_key -----------------------------------------------------------------------------------------

_SWARMKIT_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")


def test_job_key_deterministic_and_readable() -> None:
    args = ("daily_Training", "fit.model", "scheduled__2026-11-23T00:00:00+00:00", 3)
    key = job_key(*args, namespace="3f9a0c1e")
    assert key == job_key(*args, namespace="3f9a0c1e")
    assert re.fullmatch(r"ml-3f9a0c1e-daily-training-fit-model-3-[0-9a-f]{10}", key)
    assert re.fullmatch(r"ml-d-t-[0-9a-f]{10}", job_key("d", "t", "r"))
    assert job_key("d", "t", "r", prefix="job").startswith("job-d-t-")
    # the namespace shows its first 8 characters (no dangling dash), and all of it is in the digest
    assert job_key("d", "t", "r", namespace="production-east").startswith("ml-producti-d-t-")
    assert job_key("d", "t", "r", namespace="staging-1").startswith("ml-staging-d-t-")
    assert job_key("d", "t", "r", namespace="staging-1") != job_key("d", "t", "r", namespace="staging-2")


def test_job_key_differs_per_namespace_and_from_no_namespace() -> None:
    args = ("markdown_pricing", "train", "scheduled__2026-11-23T00:00:00+00:00", -1)
    keys = {job_key(*args), *(job_key(*args, namespace=ns) for ns in ("a", "b", "staging", "production"))}
    assert len(keys) == 5


@pytest.mark.parametrize("namespace", ["Staging", "-lead", "a_b", "a.b", "x" * 21, " ", "ünï"])
def test_job_key_refuses_an_invalid_namespace(namespace: str) -> None:
    assert not is_namespace(namespace)
    with pytest.raises(InvalidSpecError, match="1-20 characters of a-z, 0-9 and '-'"):
        job_key("d", "t", "r", namespace=namespace)


@pytest.mark.parametrize("namespace", ["a", "0", "staging", "3f9a0c1e", "prod-eu-1", "a--b", "a-", "x" * 20])
def test_valid_namespaces(namespace: str) -> None:
    assert is_namespace(namespace)
    assert JOB_ID_PATTERN.match(job_key("d", "t", "r", namespace=namespace))


def test_job_key_distinct_when_the_readable_part_is_truncated() -> None:
    dag = "a_very_long_dag_identifier_that_is_truncated_" * 3
    task_id = "an_equally_long_task_identifier_" * 3
    keys = {
        job_key(dag, task_id, "manual__2026-11-23T16:20:21+00:00", -1, namespace="3f9a0c1e"),
        job_key(dag, task_id, "manual__2026-11-23T16:20:21+00:00", 0, namespace="3f9a0c1e"),
        job_key(dag, task_id, "manual__2026-11-23T16:20:21+00:00", 1, namespace="3f9a0c1e"),
        job_key(dag, task_id, "manual__2026-11-23T16:20:22+00:00", 1, namespace="3f9a0c1e"),
        job_key(dag + "x", task_id, "manual__2026-11-23T16:20:22+00:00", 1, namespace="3f9a0c1e"),
        job_key(dag, task_id + "x", "manual__2026-11-23T16:20:22+00:00", 1, namespace="3f9a0c1e"),
    }
    assert len(keys) == 6
    for key in keys:
        assert len(key) <= 63
        assert key.startswith("ml-3f9a0c1e-a-very-long-dag-an-equally-lon-")
    # map_index -1 (not mapped) and a dag id that differs only by case-folded punctuation still differ
    assert job_key("A.B", "t", "r") != job_key("a_b", "t", "r")


@settings(max_examples=300)
@given(
    dag_id=st.text(min_size=1, max_size=250),
    task_id=st.text(min_size=1, max_size=250),
    run_id=st.text(max_size=250),
    map_index=st.integers(min_value=-1, max_value=10**6),
    namespace=st.one_of(st.just(""), st.from_regex(r"[a-z0-9][a-z0-9-]{0,19}", fullmatch=True)),
)
def test_job_key_always_a_valid_name(dag_id: str, task_id: str, run_id: str, map_index: int, namespace: str) -> None:
    key = job_key(dag_id, task_id, run_id, map_index, namespace=namespace)
    assert len(key) <= 63
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert _SWARMKIT_NAME.match(key)  # Swarm service names (DNS label, '-' runs allowed)
    assert JOB_ID_PATTERN.match(key)  # Metronome job ids: no '--', no trailing '-'
    assert key == job_key(dag_id, task_id, run_id, map_index, namespace=namespace)
    assert key != job_key(dag_id, task_id, run_id + "x", map_index, namespace=namespace)
    assert key != job_key(dag_id, task_id, run_id, map_index + 1, namespace=namespace)
    other = (namespace[:19] + ("y" if namespace.endswith("x") else "x")) if namespace else "x"
    assert key != job_key(dag_id, task_id, run_id, map_index, namespace=other)


# --- namespace labels and handles --------------------------------------------------------------------


def test_all_labels_carry_the_namespace_only_when_there_is_one() -> None:
    labelled = JobSpec(key="k", image="i", namespace="staging", labels={"team": "ml"}).all_labels()
    assert labelled[LABEL_NAMESPACE] == "staging"
    assert labelled[LABEL_KEY] == "k"
    assert labelled["team"] == "ml"
    assert LABEL_NAMESPACE not in JobSpec(key="k", image="i").all_labels()


def test_job_handle_round_trips_with_and_without_a_namespace() -> None:
    handle = JobHandle("docker", "k", "c0ffee", "abc", "staging")
    stored = json.loads(json.dumps(handle.to_dict()))
    assert stored["namespace"] == "staging"
    assert JobHandle.from_dict(stored) == handle
    # a handle stored by a release without namespaces (XCom, trigger kwargs) still loads
    old = {"backend": "docker", "key": "k", "job_id": "c0ffee", "spec_hash": "abc"}
    assert JobHandle.from_dict(old) == JobHandle("docker", "k", "c0ffee", "abc", "")
    assert JobHandle.from_dict({**old, "namespace": None}).namespace == ""
    assert JobHandle.from_dict({"backend": "docker", "key": "k", "job_id": "c"}) == JobHandle("docker", "k", "c")


@pytest.mark.parametrize("backend_class", [DockerBackend, SwarmBackend])
def test_find_reports_the_namespace_label(backend_class: type[DockerBackend | SwarmBackend]) -> None:
    client = mock.MagicMock(name="DockerClient")
    labels = {LABEL_KEY: "k", "airflow-ml-provider.spec-hash": "h", LABEL_NAMESPACE: "staging"}
    for collection in (client.containers, client.services):
        collection.get.return_value.id = "obj-id"
        collection.get.return_value.labels = labels
        collection.get.return_value.attrs = {"Spec": {"Labels": labels}}
    backend = backend_class(DockerConfig(), client=client)
    assert backend.find("k") == JobHandle(backend.name, "k", "obj-id", "h", "staging")
    del labels[LABEL_NAMESPACE]
    assert backend.find("k") == JobHandle(backend.name, "k", "obj-id", "h", "")


# --- DockerBackend.submit with a mocked SDK client ------------------------------------------------------


def test_submit_hands_the_sdk_a_gpu_device_request_and_hard_limits() -> None:
    from docker.types import DeviceRequest

    client = mock.MagicMock(name="DockerClient")
    client.containers.create.return_value.id = "c0ffee" * 10
    backend = DockerBackend(DockerConfig(), client=client)
    spec = JobSpec(
        key="ml-gpu-job-0123456789",
        image="airflow-ml-provider/train:latest",
        command=["python", "-m", "train"],
        env={"PLAIN": "1"},
        secret_env={"TOKEN": "s3cr3t"},
        resources=ResourceSpec.of(cpus=1.5, memory="2Gi", gpus=1),
        spec_hash="abc",
    )
    handle = backend.submit(spec)

    kwargs = client.containers.create.call_args.kwargs
    [request] = kwargs["device_requests"]
    assert isinstance(request, DeviceRequest)
    assert request == DeviceRequest(count=1, capabilities=[["gpu"]])
    assert request["Count"] == 1
    assert request["Capabilities"] == [["gpu"]]
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["mem_limit"] == 2 * 1024**3
    assert kwargs["network_mode"] == "none"
    assert kwargs["name"] == spec.key
    assert kwargs["environment"] == {"PLAIN": "1", "TOKEN": "s3cr3t", "ML_RESULT_PATH": "/airflow/xcom/result.json"}
    assert kwargs["log_config"]["Type"] == "json-file"
    assert not kwargs.get("auto_remove")
    assert "cpu_shares" not in kwargs
    client.containers.create.return_value.start.assert_called_once_with()
    assert handle.job_id == "c0ffee" * 10
    assert handle.spec_hash == "abc"
    assert "s3cr3t" not in repr(handle)
    assert hashlib.sha256(b"s3cr3t").hexdigest() not in repr(handle)


def test_submit_without_gpus_sends_no_device_requests() -> None:
    client = mock.MagicMock(name="DockerClient")
    DockerBackend(DockerConfig(), client=client).submit(JobSpec(key="k", image="i", network="host"))
    kwargs = client.containers.create.call_args.kwargs
    assert "device_requests" not in kwargs
    assert "nano_cpus" not in kwargs
    assert kwargs["network_mode"] == "host"


# --- DockerBackend.logs over a growing json-file log (fake container) -----------------------------------


class GrowingLog:
    """A container whose json-file log grows between reads; ``logs`` filters like Docker's ``since``."""

    def __init__(self, entries: list[tuple[int, str]]) -> None:
        self.entries = entries  # file order
        self.written = 0

    def logs(self, *, stdout: bool, stderr: bool, timestamps: bool, since: Any = None) -> bytes:
        assert stdout
        assert stderr
        assert timestamps
        since_ns = None if since is None else round(float(since) * 1e9)
        visible = self.entries[: self.written]
        return docker_output([e for e in visible if since_ns is None or e[0] >= since_ns])


def read_in_steps(log: GrowingLog, steps: list[int]) -> list[str]:
    client = mock.MagicMock(name="DockerClient")
    client.containers.get.return_value = log
    backend = DockerBackend(DockerConfig(), client=client)
    handle = JobHandle("docker", "k", "id")
    seen: list[str] = []
    cursor: Any = None
    for written in [*steps, len(log.entries)]:
        log.written = written
        lines, cursor = backend.logs(handle, json.loads(json.dumps(cursor)))
        seen += lines
    return seen


def test_backend_logs_in_order_stamps_every_line_once() -> None:
    entries = [(T0 + i // 3 * 400_000, f"l{i}") for i in range(40)]  # groups of 3 with one stamp, 0.4 ms apart
    assert read_in_steps(GrowingLog(entries), [1, 2, 2, 5, 13, 14, 30]) == [f"l{i}" for i in range(40)]


def test_backend_logs_keeps_a_line_written_after_a_later_stamped_one() -> None:
    entries = [(T0, "a"), (T0 + 3_000_000, "stderr line"), (T0 + 1_000_000, "stdout line"), (T0 + 4_000_000, "z")]
    assert sorted(read_in_steps(GrowingLog(entries), [2])) == sorted(line for _, line in entries)


# --- the one create-error mapping of both backends ---------------------------------------------------


@pytest.mark.parametrize("backend_class", [DockerBackend, SwarmBackend])
def test_create_errors_map_the_same_way_on_both_backends(backend_class: type[DockerBackend | SwarmBackend]) -> None:
    import docker.errors

    spec = JobSpec(key="ml-dup-0123456789", image="i", secret_env={"TOKEN": "s3cr3t-value"})
    client = mock.MagicMock(name="DockerClient")
    conflict = docker.errors.APIError("Conflict", response=mock.MagicMock(status_code=409), explanation="name in use")
    refused = docker.errors.APIError(
        "Bad", response=mock.MagicMock(status_code=400), explanation="invalid env TOKEN=s3cr3t-value"
    )
    backend = backend_class(DockerConfig(), client=client)
    for create in (client.containers.create, client.services.create):
        create.side_effect = conflict
    with pytest.raises(JobExistsError, match=spec.key):
        backend.submit(spec)
    for create in (client.containers.create, client.services.create):
        create.side_effect = refused
    with pytest.raises(BackendError, match="refused to create") as err:
        backend.submit(spec)
    assert "s3cr3t-value" not in str(err.value)
    assert "TOKEN=***" in str(err.value)

"""MlflowBatchPredictOperator against a real HDFS (WebHDFS), and its memory bound, with real MLflow models."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from airflow_ml_provider.exceptions import MlProviderError
from airflow_ml_provider.operators.batch_predict import MlflowBatchPredictOperator
from tests.integration.conftest import admin_client, set_hdfs_conn

pytestmark = pytest.mark.integration
CTX: Any = {}


def put_parquet(client: Any, path: str, frame: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=64)
    client.write(path, data=buf.getvalue(), overwrite=True)


def get_parquet(client: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    with client.read(path) as reader:
        return pq.read_table(io.BytesIO(reader.read())).to_pandas()


def test_hdfs_input_to_hdfs_output_with_success_last(
    hdfs: Any, hdfs_dir: str, local_models_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import pandas as pd

    from scripts.testbed.predict_data import FEATURES, make_frame

    set_hdfs_conn(monkeypatch, "hdfs_it", hdfs.namenode_urls)
    admin = admin_client(hdfs)
    admin.set_owner(hdfs_dir, owner="etl")  # the connection's user writes the output
    frames = []
    for i, country in enumerate(("DE", "FR")):
        frame = make_frame(150 + 50 * i, seed=i, start_id=1000 * i)
        put_parquet(admin, f"{hdfs_dir}/in/country={country}/part-00000.parquet", frame)
        frames.append(frame.assign(country=country))
    admin.write(f"{hdfs_dir}/in/_SUCCESS", data=b"")
    data = pd.concat(frames, ignore_index=True)
    out = f"{hdfs_dir}/scores/day=1"

    def score(**kw: Any) -> dict[str, Any]:
        kw.setdefault("model_uri", "models:/lin@champion")
        kw.setdefault("input_path", f"hdfs://ignored-authority{hdfs_dir}/in")
        kw.setdefault("output_path", out)
        return MlflowBatchPredictOperator(task_id="score", hdfs_conn_id="hdfs_it", chunk_rows=64, **kw).execute(CTX)

    result = score()
    assert result["rows"] == 350
    assert result["files"] == 2
    listing = dict(admin.list(out, status=True))
    assert sorted(listing) == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]
    assert all(listing["_SUCCESS"]["modificationTime"] >= s["modificationTime"] for s in listing.values())
    assert {s["owner"] for s in listing.values()} == {"etl"}
    got = pd.concat([get_parquet(admin, f"{out}/part-0000{i}.parquet") for i in (0, 1)], ignore_index=True)
    assert list(got.columns) == ["id", "a", "b", "c", "country", "prediction"]
    np.testing.assert_allclose(
        got["prediction"], local_models_conn.sklearn_model.predict(data[list(FEATURES)]), rtol=1e-12
    )
    assert got["id"].tolist() == data["id"].tolist()

    # a rerun replaces the output: old renamed aside, new renamed in, old deleted, _SUCCESS last
    result = score(input_path=f"{hdfs_dir}/in/country=FR", passthrough_columns=["id"])
    assert result["rows"] == 200
    assert sorted(admin.list(out)) == ["_SUCCESS", "part-00000.parquet"]
    assert get_parquet(admin, f"{out}/part-00000.parquet")["id"].tolist() == list(range(1000, 1200))
    assert sorted(admin.list(f"{hdfs_dir}/scores")) == ["day=1"]  # no .tmp-/.old- leftovers

    # a failing run (NaN predictions) leaves the previous output untouched and no temporary directory
    before = {n: s["modificationTime"] for n, s in admin.list(out, status=True)}
    with pytest.raises(MlProviderError, match="NaN"):
        score(model_uri="models:/nan@champion")
    assert {n: s["modificationTime"] for n, s in admin.list(out, status=True)} == before
    assert sorted(admin.list(f"{hdfs_dir}/scores")) == ["day=1"]


def test_peak_memory_is_bounded_by_the_chunk_not_the_dataset(local_models_conn: Any, tmp_path: Path) -> None:
    """Scoring 10x the chunk size must not need much more memory than scoring 1x (fresh interpreters)."""
    from scripts.testbed.predict_data import make_frame, peak_rss_growth, write_parquet

    chunk = 50_000
    for mult in (1, 10):
        frame = make_frame(chunk * mult, extra_features=17)  # 21 float/int columns, 8.4 MB per chunk
        write_parquet(frame, tmp_path / f"in{mult}" / "part-00000.parquet", row_group_size=chunk)
        del frame
    mb = 2**20

    def growth(mode: str, mult: int) -> float:
        result = peak_rss_growth(
            mode,
            local_models_conn.conn_json,
            "models:/lin@champion",
            str(tmp_path / f"in{mult}"),
            str(tmp_path / f"out-{mode}{mult}"),
            chunk,
        )
        return result["growth"] / mb

    ours_1, ours_10 = growth("operator", 1), growth("operator", 10)
    naive_10 = growth("naive", 10)  # for scale: what a read-everything script needs for the same data
    print(
        f"\npeak RSS growth, chunk_rows={chunk}: operator 1x={ours_1:.1f} MB, 10x={ours_10:.1f} MB; "
        f"read-all pandas script 10x={naive_10:.1f} MB"
    )
    assert ours_10 < 2 * ours_1, (ours_1, ours_10)

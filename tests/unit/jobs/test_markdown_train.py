"""The markdown-pricing training job (jobs.markdown_train), in-process and as the container runs it."""

from __future__ import annotations

import math
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightgbm  # noqa: F401  (dev extra; a missing library must fail, not skip)
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ml_provider.jobs import markdown_model, markdown_train
from tests.conftest import ROOT
from tests.unit.jobs.conftest import JOBS_DIR, WEEK, load_result, run_subprocess

ROUNDS = "50"


def run_job(tmp_path: Path, countries: str, *extra: str) -> tuple[int, Path]:
    result = tmp_path / "xcom" / "result.json"
    args = ["--data-root", str(tmp_path / "lake"), "--week", WEEK, "--countries", countries]
    args += ["--result-path", str(result), "--num-boost-round", ROUNDS, *extra]
    return markdown_train.main(args), result


# --- in-process ----------------------------------------------------------------------------------


def test_job_writes_predictions_and_result(lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result_path = run_job(tmp_path, "DE,FR")
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"markdown_train: start countries=DE,FR week={WEEK}")
    assert lines[-1].startswith(f"markdown_train: done countries=DE,FR week={WEEK}")
    assert all(line.startswith("markdown_train: ") for line in lines)

    result = load_result(result_path)
    assert result["week"] == WEEK
    assert isinstance(result["num_threads"], int)
    assert result["num_threads"] >= 1
    assert set(result["countries"]) == {"DE", "FR"}
    for country, entry in result["countries"].items():
        directory = lake / WEEK / "predictions" / f"country={country}"
        assert entry["predictions_path"] == str(directory / "part-0.parquet")
        assert entry["rows"] == 400
        assert isinstance(entry["rmse_holdout"], float)
        assert math.isfinite(entry["rmse_holdout"])
        assert entry["rmse_holdout"] > 0
        assert 0.0 <= entry["mean_markdown"] <= 0.5
        assert sorted(p.name for p in directory.iterdir()) == ["_SUCCESS", "part-0.parquet"]
        assert (directory / "_SUCCESS").stat().st_mtime_ns >= (directory / "part-0.parquet").stat().st_mtime_ns

        predictions = pq.read_table(directory / "part-0.parquet").to_pandas()
        assert list(predictions.columns) == list(markdown_model.PREDICTION_COLUMNS)
        assert len(predictions) == entry["skus"] == 50
        assert predictions["sku"].is_unique
        assert set(predictions["recommended_markdown"]) <= set(markdown_model.MARKDOWN_GRID)
        assert predictions[["expected_units", "expected_revenue"]].notna().all().all()
        # The recommendation maximizes expected revenue, so it never does worse than no markdown.
        assert (predictions["expected_revenue"] >= predictions["revenue_at_no_markdown"] - 1e-9).all()
        assert (predictions["expected_units"] <= predictions["stock"] + 1e-9).all()
        assert entry["mean_markdown"] == pytest.approx(predictions["recommended_markdown"].mean(), abs=1e-4)
    # The recommendations differ between SKUs (it is not a constant answer).
    assert predictions["recommended_markdown"].nunique() > 1
    # Nothing shared between groups of countries.
    assert not (lake / WEEK / "predictions" / "_SUCCESS").exists()


def test_job_result_path_from_environment(lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deep" / "er" / "result.json"
    monkeypatch.setenv("ML_RESULT_PATH", str(target))
    args = ["--data-root", str(lake), "--week", WEEK, "--countries", "FR", "--num-boost-round", "5"]
    assert markdown_train.main(args) == 0
    assert list(load_result(target)["countries"]) == ["FR"]


def test_rerun_replaces_predictions(lake: Path, tmp_path: Path) -> None:
    assert run_job(tmp_path, "DE")[0] == 0
    assert run_job(tmp_path, "DE")[0] == 0
    directory = lake / WEEK / "predictions" / "country=DE"
    assert sorted(p.name for p in directory.iterdir()) == ["_SUCCESS", "part-0.parquet"]


def test_missing_country_exits_2_naming_it(lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result_path = run_job(tmp_path, "DE,XX")
    captured = capsys.readouterr()
    assert code == 2
    expected = str(lake / WEEK / "sales" / "country=XX")
    assert f"markdown_train: error: country XX: no data for week {WEEK}: {expected}" in captured.out
    assert captured.err == ""
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("markdown_train: start countries=DE,XX")
    assert lines[-1].startswith("markdown_train: failed exit=2")
    assert expected in lines[-1]
    assert not result_path.exists(), "no result for a failed run"
    assert not (lake / WEEK / "predictions" / "country=XX").exists()
    # The other countries of the group are still attempted.
    assert (lake / WEEK / "predictions" / "country=DE" / "_SUCCESS").exists()


def test_missing_column_is_a_clear_error(lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    part = lake / WEEK / "sales" / "country=FR" / "part-0.parquet"
    pq.write_table(pq.read_table(part).drop(["discount", "stock"]), part)
    code, _ = run_job(tmp_path, "FR")
    out = capsys.readouterr().out
    assert code == 2
    assert f"{part}: missing column(s) discount, stock" in out
    assert not (lake / WEEK / "predictions" / "country=FR").exists()


def test_non_numeric_column_and_empty_partition(lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    part = lake / WEEK / "sales" / "country=FR" / "part-0.parquet"
    frame = pq.read_table(part).to_pandas()
    frame["base_price"] = frame["base_price"].astype(str)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), part)
    shutil.rmtree(lake / WEEK / "sales" / "country=DE")
    (lake / WEEK / "sales" / "country=DE").mkdir()
    code, _ = run_job(tmp_path, "FR,DE")
    out = capsys.readouterr().out
    assert code == 2
    assert "column base_price must be numeric" in out
    assert f"country DE: no data for week {WEEK}: no *.parquet file in" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--week", "2026-11-31", "--countries", "DE"],
        ["--week", WEEK, "--countries", " , "],
        ["--week", WEEK, "--countries", "DE/../FR"],
        ["--week", WEEK],
        ["--week", WEEK, "--countries", "DE", "--num-boost-round", "0"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = markdown_train.main(["--data-root", str(tmp_path), *args])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 2
    assert out[0].startswith("markdown_train: start")
    assert out[-1].startswith("markdown_train: failed exit=2")


def test_nan_predictions_fail_and_write_nothing(
    lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_fit = markdown_model._fit

    class NanModel:
        def __init__(self, model: Any) -> None:
            self.model = model

        def predict(self, features: Any) -> Any:
            values = np.asarray(self.model.predict(features), dtype="float64")
            values[3] = float("nan")
            return values

    monkeypatch.setattr(markdown_model, "_fit", lambda *a: NanModel(real_fit(*a)))
    code, result_path = run_job(tmp_path, "DE")
    captured = capsys.readouterr()
    assert code == 1
    assert "markdown_train: error: country DE: non-finite predictions for 1 SKU(s)" in captured.out
    assert captured.out.strip().splitlines()[-1].startswith("markdown_train: failed exit=1")
    assert not (lake / WEEK / "predictions" / "country=DE").exists()
    assert not result_path.exists()


def test_rows_without_target_are_dropped(lake: Path, tmp_path: Path) -> None:
    part = lake / WEEK / "sales" / "country=DE" / "part-0.parquet"
    frame = pq.read_table(part).to_pandas()
    frame["units_sold"] = frame["units_sold"].astype("float64")
    frame.loc[:9, "units_sold"] = float("nan")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), part)
    code, result_path = run_job(tmp_path, "DE")
    assert code == 0
    assert load_result(result_path)["countries"]["DE"]["rows"] == 390


def test_a_country_is_fast(lake: Path, tmp_path: Path) -> None:
    """400 rows and 50 boosting rounds: typically 0.05 to 0.1 s (lightgbm's import is not counted)."""
    code, result_path = run_job(tmp_path, "DE")
    assert code == 0
    assert load_result(result_path)["countries"]["DE"]["seconds"] < 1.0


# --- as the container runs it ----------------------------------------------------------------


def test_subprocess_run(lake: Path, tmp_path: Path) -> None:
    result_path = tmp_path / "xcom" / "result.json"
    proc = run_subprocess(
        [sys.executable, "-m", "airflow_ml_provider.jobs.markdown_train", "--data-root", str(lake), "--week", WEEK,
         "--countries", "DE,FR", "--result-path", str(result_path), "--num-boost-round", ROUNDS],
        ROOT,
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"markdown_train: start countries=DE,FR week={WEEK}")
    assert lines[-1].startswith(f"markdown_train: done countries=DE,FR week={WEEK}")
    assert set(load_result(result_path)["countries"]) == {"DE", "FR"}


def test_subprocess_missing_country_exits_2(lake: Path, tmp_path: Path) -> None:
    proc = run_subprocess(
        [sys.executable, "-m", "airflow_ml_provider.jobs.markdown_train", "--data-root", str(lake), "--week", WEEK,
         "--countries", "IT", "--result-path", str(tmp_path / "r.json")],
        ROOT,
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    missing = f"country IT: no data for week {WEEK}: {lake / WEEK / 'sales' / 'country=IT'} does not exist"
    assert f"markdown_train: error: {missing}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("markdown_train: failed exit=2")
    assert not (tmp_path / "r.json").exists()


def test_runs_like_in_the_image_without_airflow(lake: Path, tmp_path: Path) -> None:
    """Only the jobs directory and an empty package __init__, and `import airflow` fails."""
    image = tmp_path / "image"
    shutil.copytree(JOBS_DIR, image / "airflow_ml_provider" / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    (image / "airflow_ml_provider" / "__init__.py").write_text("")
    package_init = str(image / "airflow_ml_provider" / "__init__.py")
    launcher = textwrap.dedent(
        f"""
        import runpy, sys
        sys.modules["airflow"] = None  # any `import airflow...` now raises ImportError
        import airflow_ml_provider
        assert airflow_ml_provider.__file__ == {package_init!r}, airflow_ml_provider.__file__
        sys.argv[0] = "markdown_train"
        runpy.run_module("airflow_ml_provider.jobs.markdown_train", run_name="__main__")
        """
    )
    result_path = tmp_path / "xcom" / "result.json"
    proc = run_subprocess(
        [sys.executable, "-c", launcher, "--data-root", str(lake), "--week", WEEK, "--countries", "FR",
         "--num-boost-round", "10"],
        image,
        tmp_path,
        env={"ML_RESULT_PATH": str(result_path), "ML_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = load_result(result_path)
    assert result["num_threads"] == 1
    assert list(result["countries"]) == ["FR"]

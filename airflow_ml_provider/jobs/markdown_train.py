"""Weekly markdown-pricing training job: the entry point of one container per group of countries.

Usage::

    python -m airflow_ml_provider.jobs.markdown_train --data-root R --week 2026-11-23 \\
        --countries DE,FR,IT [--result-path /airflow/xcom/result.json] [--num-boost-round 50]

For each country it reads ``{R}/{week}/sales/country=XX/*.parquet`` (the layout of
:mod:`airflow_ml_provider.jobs.synthetic`), trains a LightGBM Poisson regressor of ``units_sold``
(monotone non-decreasing in ``discount``), and, for each SKU's state next week, predicts the units
sold at every candidate markdown of :data:`MARKDOWN_GRID` (0 % to 50 % in steps of 5 %, capped by
stock) and recommends the markdown with the highest expected revenue (ties go to the smaller
markdown). Markdowns are fractions of the base price: 0.3 means 30 % off.

Outputs, per country, written so that a reader never sees a partial result:

* ``{R}/{week}/predictions/country=XX/part-0.parquet``: one row per SKU (temporary file, then
  ``os.replace``); columns in :data:`PREDICTION_COLUMNS`;
* ``{R}/{week}/predictions/country=XX/_SUCCESS``: written after the file (and removed before it
  is replaced on a rerun).

Groups of countries run in parallel, so the job writes nothing shared by several groups (no
``predictions/_SUCCESS``); whoever waits for all countries checks the per-country markers.

Finally the JSON result (the task's XCom) goes to ``--result-path`` (default: ``$ML_RESULT_PATH``,
else ``/airflow/xcom/result.json``)::

    {"week": "2026-11-23",
     "num_threads": 4,
     "countries": {"DE": {"rows": 400, "skus": 50,
                          "predictions_path": "R/2026-11-23/predictions/country=DE/part-0.parquet",
                          "rmse_holdout": 3.1, "mean_markdown": 0.21, "num_threads": 1,
                         "seconds": 0.2}, ...}}

Top-level ``num_threads`` is the limit found; each country's is what it used (see Threads).

``rmse_holdout`` is the RMSE of units on a random 20 % of the rows held out from a first fit (the
predictions come from a second fit on all rows); ``null`` if there were too few rows to hold out.

Every country is attempted even if an earlier one failed; a failed country has no output. Exit
codes: 0 all countries done; 2 bad input (bad arguments, a country without data, missing or
invalid columns); 1 any other failure (e.g. NaN predictions). Progress goes to stdout, flushed:
the first line is ``markdown_train: start ...`` and the last ``markdown_train: done ...`` (or
``markdown_train: failed ...``); errors are also printed to stderr.

Threads: ``$ML_NUM_THREADS`` if set (used as given), else the container's CPU limit (cgroup v2
``cpu.max``, or cgroup v1 CFS quota), else the CPUs this process may run on. Without the variable,
a country also gets no more than one thread per :data:`ROWS_PER_THREAD` rows: on small data,
LightGBM's OpenMP threads cost far more than they bring (400 rows: 0.07 s on one thread, 1 to 3 s
on two busy CPUs).

Runs inside the job container: stdlib, numpy, pandas, pyarrow and lightgbm only (see the package
docstring); lightgbm is imported when training starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PREFIX = "markdown_train:"
DEFAULT_RESULT_PATH = "/airflow/xcom/result.json"
RESULT_PATH_ENV = "ML_RESULT_PATH"
THREADS_ENV = "ML_NUM_THREADS"
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"

#: Candidate markdowns: 0 % to 50 % in steps of 5 %, as fractions of the base price.
MARKDOWN_GRID = tuple(round(0.05 * i, 2) for i in range(11))
#: Columns a sales file must have, and their kind (``num``: int or float; ``str``: any, read as text).
REQUIRED_COLUMNS: dict[str, str] = {
    "sku": "str",
    "week_of_year": "num",
    "base_price": "num",
    "discount": "num",
    "stock": "num",
    "days_to_season_end": "num",
    "units_sold": "num",
}
FEATURES = ("discount", "base_price", "stock", "days_to_season_end", "week_of_year")
TARGET = "units_sold"
PREDICTION_COLUMNS = (
    "sku",
    "base_price",
    "stock",
    "days_to_season_end",
    "recommended_markdown",
    "expected_units",
    "expected_revenue",
    "units_at_no_markdown",
    "revenue_at_no_markdown",
)
#: Fewer rows than this cannot train a meaningful model.
MIN_ROWS = 10
HOLDOUT_FRACTION = 0.2
SEED = 42
#: Without ``$ML_NUM_THREADS``, a country gets at most one thread per this many rows.
ROWS_PER_THREAD = 20_000
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class BadInputError(Exception):
    """The job's input is wrong (arguments, missing data, columns): exit code 2."""


class JobError(Exception):
    """The job failed on valid input (e.g. NaN predictions): exit code 1."""


def log(message: str) -> None:
    """One progress line on stdout, flushed so it reaches the task log at once."""
    print(f"{PREFIX} {message}", flush=True)


# --- threads ---------------------------------------------------------------------------------


def cgroup_cpu_limit(cpu_max: str = CGROUP_V2_CPU_MAX) -> int | None:
    """The container's CPU limit rounded up to whole CPUs, or ``None`` if unlimited or unknown.

    Reads cgroup v2 ``cpu.max`` (``"200000 100000"`` = 2 CPUs, ``"max 100000"`` = no limit),
    else cgroup v1's CFS quota and period (only when ``cpu_max`` is the default path).
    """
    try:
        with open(cpu_max) as f:
            fields = f.read().split()
        quota, period = fields[0], (fields[1] if len(fields) > 1 else "100000")
    except (OSError, IndexError):
        if cpu_max != CGROUP_V2_CPU_MAX:
            return None
        try:
            with open(CGROUP_V1_QUOTA) as f:
                quota = f.read().strip()
            with open(CGROUP_V1_PERIOD) as f:
                period = f.read().strip()
        except OSError:
            return None
    if quota == "max":
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1 uses -1 for "no limit"
        return None
    return max(1, math.ceil(q / p))


def available_cpus() -> int:
    """CPUs this process may run on (affinity), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def num_threads(env: dict[str, str] | None = None, cpu_max: str = CGROUP_V2_CPU_MAX) -> int:
    """LightGBM threads: ``$ML_NUM_THREADS``, else the cgroup CPU limit, else the available CPUs."""
    env = dict(os.environ) if env is None else env
    value = env.get(THREADS_ENV, "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            raise BadInputError(f"{THREADS_ENV}={value!r} is not a whole number of threads, e.g. 4") from None
        if threads < 1:
            raise BadInputError(f"{THREADS_ENV}={value!r} must be at least 1")
        return threads
    cpus = available_cpus()
    limit = cgroup_cpu_limit(cpu_max)
    return cpus if limit is None else min(limit, cpus)


def threads_for(rows: int, limit: int, explicit: bool) -> int:
    """Threads for a country of ``rows`` rows: ``limit`` if set explicitly, else one per ROWS_PER_THREAD."""
    return limit if explicit else max(1, min(limit, rows // ROWS_PER_THREAD))


# --- input -----------------------------------------------------------------------------------


def parse_week(week: str) -> str:
    """Check the week is a date ``YYYY-MM-DD`` (it is a path segment); return it."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", week):
        try:
            dt.date.fromisoformat(week)
            return week
        except ValueError:
            pass
    raise BadInputError(f"--week {week!r} is not a date like 2026-11-23 (YYYY-MM-DD)")


def parse_countries(value: str) -> list[str]:
    """``"DE,FR"`` -> ``["DE", "FR"]``, de-duplicated in order; each code must be a safe path part."""
    countries: list[str] = []
    for item in value.split(","):
        code = item.strip()
        if not code:
            continue
        if not _NAME.match(code):
            raise BadInputError(f"--countries: {code!r} is not a country code (letters, digits, '_', '-'; e.g. DE)")
        if code not in countries:
            countries.append(code)
    if not countries:
        raise BadInputError(f"--countries {value!r} names no country; pass e.g. DE,FR")
    return countries


def sales_dir(root: str, week: str, country: str) -> str:
    return os.path.join(root, week, "sales", f"country={country}")


def predictions_dir(root: str, week: str, country: str) -> str:
    return os.path.join(root, week, "predictions", f"country={country}")


def _data_files(directory: str) -> list[str]:
    # Like Spark and pyarrow, skip hidden and metadata files ('.tmp...', '_SUCCESS').
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.endswith(".parquet") and not name.startswith((".", "_"))
    )


def _check_columns(frame: pd.DataFrame, path: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(
            f"{path}: missing column(s) {', '.join(missing)}; a sales file needs "
            f"{', '.join(REQUIRED_COLUMNS)} (has {', '.join(map(str, frame.columns))})"
        )
    for column, kind in REQUIRED_COLUMNS.items():
        dtype = frame[column].dtype
        if kind == "num" and not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            raise BadInputError(f"{path}: column {column} must be numeric, found {dtype}")


def read_country(root: str, week: str, country: str) -> pd.DataFrame:
    """All rows of one country's sales partition, validated; :class:`BadInputError` otherwise."""
    directory = sales_dir(root, week, country)
    if not os.path.isdir(directory):
        raise BadInputError(f"country {country}: no data for week {week}: {directory} does not exist")
    files = _data_files(directory)
    if not files:
        raise BadInputError(f"country {country}: no data for week {week}: no *.parquet file in {directory}")
    frames = []
    for path in files:
        try:
            frame = pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as e:
            raise BadInputError(f"country {country}: cannot read {path}: {e}") from None
        _check_columns(frame, path)
        frames.append(frame[list(REQUIRED_COLUMNS)])
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    where = directory if len(files) > 1 else files[0]

    data = data.astype({c: "float64" for c, kind in REQUIRED_COLUMNS.items() if kind == "num"})
    data["sku"] = data["sku"].astype(str)
    labelled = np.isfinite(data[TARGET].to_numpy())
    if not labelled.all():
        log(f"country={country} dropping {int((~labelled).sum())} row(s) without a finite {TARGET}")
        data = data[labelled].reset_index(drop=True)
    if len(data) < MIN_ROWS:
        raise BadInputError(f"country {country}: {len(data)} usable row(s) in {where}; need at least {MIN_ROWS}")
    if (data[TARGET] < 0).any():
        raise BadInputError(f"country {country}: {where}: {TARGET} has negative values")
    for column in ("base_price", "stock"):
        values = data[column].to_numpy()
        if not np.isfinite(values).all() or (values < 0).any():
            raise BadInputError(f"country {country}: {where}: {column} must be finite and >= 0")
    discount = data["discount"].to_numpy()
    if np.nanmin(discount, initial=0.0) < 0 or np.nanmax(discount, initial=0.0) > 1:
        raise BadInputError(f"country {country}: {where}: discount must be a fraction between 0 and 1 (0.3 = 30 % off)")
    return data


# --- model -----------------------------------------------------------------------------------


def _params(threads: int, rows: int) -> dict[str, Any]:
    return {
        "objective": "poisson",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": max(2, min(20, rows // 20)),
        "feature_fraction": 1.0,
        "monotone_constraints": [1 if f == "discount" else 0 for f in FEATURES],
        "num_threads": threads,
        "seed": SEED,
        "deterministic": True,
        "verbose": -1,
    }


def _fit(features: pd.DataFrame, target: np.ndarray, params: dict[str, Any], rounds: int) -> Any:
    import lightgbm as lgb

    dataset = lgb.Dataset(features, label=target, params={"verbose": -1}, free_raw_data=True)
    return lgb.train(params, dataset, num_boost_round=rounds)


def next_week_state(data: pd.DataFrame, week: str) -> pd.DataFrame:
    """Each SKU's features for the coming week, from its latest row (fewest days to season end).

    Stock is what was left after that row's sales, days to season end move on by a week, and the
    week of year is that of ``week``.
    """
    latest = data.sort_values(["sku", "days_to_season_end"], kind="stable").drop_duplicates("sku", keep="first")
    state = pd.DataFrame(
        {
            "sku": latest["sku"].to_numpy(),
            "base_price": latest["base_price"].to_numpy(),
            "stock": np.maximum(latest["stock"].to_numpy() - latest[TARGET].to_numpy(), 0.0),
            "days_to_season_end": np.maximum(latest["days_to_season_end"].to_numpy() - 7.0, 0.0),
            "week_of_year": float(dt.date.fromisoformat(week).isocalendar()[1]),
        }
    )
    return state


def recommend(model: Any, state: pd.DataFrame) -> pd.DataFrame:
    """Predict units at every markdown of the grid and pick the revenue-maximizing one per SKU."""
    n, grid = len(state), np.array(MARKDOWN_GRID)
    # One row per (sku, markdown), sku-major.
    candidates = state.loc[state.index.repeat(len(grid))].reset_index(drop=True)
    candidates["discount"] = np.tile(grid, n)
    raw = np.asarray(model.predict(candidates[list(FEATURES)]), dtype="float64").reshape(n, len(grid))
    if not np.isfinite(raw).all():
        bad = state["sku"].to_numpy()[~np.isfinite(raw).all(axis=1)]
        raise JobError(f"non-finite predictions for {len(bad)} SKU(s), e.g. {', '.join(map(str, bad[:5]))}")
    stock = state["stock"].to_numpy()[:, None]
    units = np.minimum(np.maximum(raw, 0.0), stock)
    revenue = state["base_price"].to_numpy()[:, None] * (1.0 - grid[None, :]) * units
    best = revenue.argmax(axis=1)  # the first maximum: ties go to the smaller markdown
    rows = np.arange(n)
    return pd.DataFrame(
        {
            "sku": state["sku"].to_numpy(),
            "base_price": state["base_price"].to_numpy(),
            "stock": state["stock"].to_numpy(),
            "days_to_season_end": state["days_to_season_end"].to_numpy(),
            "recommended_markdown": grid[best],
            "expected_units": units[rows, best],
            "expected_revenue": revenue[rows, best],
            "units_at_no_markdown": units[:, 0],
            "revenue_at_no_markdown": revenue[:, 0],
        }
    )[list(PREDICTION_COLUMNS)]


def train_country(data: pd.DataFrame, week: str, threads: int, rounds: int) -> tuple[pd.DataFrame, float | None]:
    """Fit, score on a holdout, refit on all rows and recommend; returns (predictions, holdout RMSE)."""
    features = data[list(FEATURES)]
    target = data[TARGET].to_numpy()
    params = _params(threads, len(data))
    n_holdout = int(len(data) * HOLDOUT_FRACTION)
    rmse: float | None = None
    if n_holdout >= 2:
        order = np.random.default_rng(SEED).permutation(len(data))
        test, train = order[:n_holdout], order[n_holdout:]
        model = _fit(features.iloc[train], target[train], _params(threads, len(train)), rounds)
        predicted = np.asarray(model.predict(features.iloc[test]), dtype="float64")
        error = float(np.sqrt(np.mean((predicted - target[test]) ** 2)))
        rmse = error if math.isfinite(error) else None
    model = _fit(features, target, params, rounds)
    return recommend(model, next_week_state(data, week)), rmse


# --- output ----------------------------------------------------------------------------------


def _write_marker(directory: str) -> None:
    tmp = os.path.join(directory, f"._SUCCESS.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb"):
        pass
    os.replace(tmp, os.path.join(directory, "_SUCCESS"))


def write_predictions(predictions: pd.DataFrame, directory: str) -> str:
    """Write ``part-0.parquet`` atomically into ``directory``, then ``_SUCCESS``; return the file."""
    os.makedirs(directory, exist_ok=True)
    marker = os.path.join(directory, "_SUCCESS")
    if os.path.lexists(marker):  # a rerun: the old marker must not vouch for a file being replaced
        os.remove(marker)
    path = os.path.join(directory, "part-0.parquet")
    tmp = os.path.join(directory, f".part-0.parquet.tmp-{uuid.uuid4().hex}")
    try:
        pq.write_table(pa.Table.from_pandas(predictions, preserve_index=False), tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
    _write_marker(directory)
    return path


def write_result(result: dict[str, Any], path: str) -> None:
    """Write the JSON result atomically (strict JSON: a NaN raises rather than writes ``NaN``)."""
    text = json.dumps(result, allow_nan=False, sort_keys=False)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


# --- entry point -----------------------------------------------------------------------------


def run_country(root: str, week: str, country: str, limit: int, rounds: int, explicit: bool = False) -> dict[str, Any]:
    """Train and write one country; its entry of the result."""
    started = time.perf_counter()
    data = read_country(root, week, country)
    threads = threads_for(len(data), limit, explicit)
    log(f"country={country} rows={len(data)} skus={data['sku'].nunique()} num_threads={threads} training")
    predictions, rmse = train_country(data, week, threads, rounds)
    path = write_predictions(predictions, predictions_dir(root, week, country))
    seconds = round(time.perf_counter() - started, 3)
    mean_markdown = round(float(predictions["recommended_markdown"].mean()), 4)
    entry = {
        "rows": len(data),
        "skus": len(predictions),
        "predictions_path": path,
        "rmse_holdout": None if rmse is None else round(rmse, 4),
        "mean_markdown": mean_markdown,
        "num_threads": threads,
        "seconds": seconds,
    }
    log(
        f"country={country} wrote {path} skus={len(predictions)} rmse_holdout={entry['rmse_holdout']} "
        f"mean_markdown={mean_markdown} seconds={seconds}"
    )
    return entry


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 itself; route it through our reporting
        raise BadInputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m airflow_ml_provider.jobs.markdown_train",
        description="Train markdown-pricing models for a group of countries and write recommendations.",
    )
    parser.add_argument(
        "--data-root", required=True, help="dataset root: reads ROOT/WEEK/sales, writes ROOT/WEEK/predictions"
    )
    parser.add_argument("--week", required=True, help="the week's date, YYYY-MM-DD")
    parser.add_argument("--countries", required=True, help="comma-separated country codes, e.g. DE,FR,IT")
    parser.add_argument(
        "--result-path",
        default=None,
        help=f"where to write the JSON result (default: ${RESULT_PATH_ENV}, else {DEFAULT_RESULT_PATH})",
    )
    parser.add_argument("--num-boost-round", type=int, default=50, help="LightGBM boosting rounds (default 50)")
    return parser


def _fail(code: int, errors: list[str], started: float) -> int:
    for message in errors:
        print(f"{PREFIX} error: {message}", file=sys.stderr, flush=True)
    log(f"failed exit={code} seconds={time.perf_counter() - started:.3f} errors: {' | '.join(errors)}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; returns the exit code (0 ok, 2 bad input, 1 other failure)."""
    started = time.perf_counter()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args_list):
        build_parser().print_help()
        return 0
    try:
        args = build_parser().parse_args(args_list)
        week = parse_week(args.week)
        countries = parse_countries(args.countries)
        if args.num_boost_round < 1:
            raise BadInputError(f"--num-boost-round must be at least 1, got {args.num_boost_round}")
        threads = num_threads()
        explicit = bool(os.environ.get(THREADS_ENV, "").strip())
    except BadInputError as e:
        print(f"{PREFIX} start args={' '.join(args_list)}", flush=True)
        return _fail(2, [str(e)], started)
    root = os.path.abspath(args.data_root)
    result_path = args.result_path or os.environ.get(RESULT_PATH_ENV) or DEFAULT_RESULT_PATH
    log(
        f"start countries={','.join(countries)} week={week} data_root={root} "
        f"num_boost_round={args.num_boost_round} num_threads={threads}"
    )
    if not os.path.exists(os.path.join(root, week, "sales", "_SUCCESS")):
        log(f"warning: {os.path.join(root, week, 'sales', '_SUCCESS')} does not exist; the dataset may be incomplete")
    # Import once, up front, so a broken install fails before any work and the per-country timings
    # leave it out (lightgbm also imports scikit-learn when that is installed: seconds).
    imported = time.perf_counter()
    try:
        import lightgbm
    except ImportError as e:
        return _fail(1, [f"cannot import lightgbm: {e}"], started)
    log(f"lightgbm {lightgbm.__version__} imported in {time.perf_counter() - imported:.3f}s")

    done: dict[str, Any] = {}
    errors: list[str] = []
    code = 0
    for country in countries:
        try:
            done[country] = run_country(root, week, country, threads, args.num_boost_round, explicit)
        except BadInputError as e:
            errors.append(str(e))
            code = code or 2
        except Exception as e:  # noqa: BLE001 - any failure of one country: report it, go on with the others
            traceback.print_exc(file=sys.stderr)
            message = str(e) if isinstance(e, JobError) else f"{type(e).__name__}: {e}"
            errors.append(f"country {country}: {message}")
            code = 1
        if country not in done:
            log(f"country={country} failed; nothing written for it")
    if errors:
        return _fail(code, errors, started)

    result = {"week": week, "num_threads": threads, "countries": done}
    try:
        write_result(result, result_path)
    except (OSError, ValueError) as e:
        return _fail(1, [f"cannot write the result to {result_path}: {e}"], started)
    log(
        f"done countries={','.join(countries)} week={week} result={result_path} "
        f"seconds={time.perf_counter() - started:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

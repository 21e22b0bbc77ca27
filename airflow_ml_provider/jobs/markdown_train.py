"""Weekly markdown-pricing training job: the entry point of one container per group of countries.

Usage::

    python -m airflow_ml_provider.jobs.markdown_train --data-root R --week 2026-11-23 \\
        --countries DE,FR,IT [--result-path /airflow/xcom/result.json] [--num-boost-round 50]

For each country it reads ``{R}/{week}/sales/country=XX/*.parquet`` (the layout of
:mod:`airflow_ml_provider.jobs.synthetic`), fits the model of
:mod:`airflow_ml_provider.jobs.markdown_model` and writes one recommended markdown per SKU.

Outputs, per country, written so that a reader never sees a partial result
(:mod:`airflow_ml_provider.jobs.markdown_data`):

* ``{R}/{week}/predictions/country=XX/part-0.parquet``: one row per SKU (temporary file, then
  ``os.replace``); columns in :data:`~airflow_ml_provider.jobs.markdown_model.PREDICTION_COLUMNS`;
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
                          "rmse_holdout": 3.1, "mean_markdown": 0.08, "num_threads": 1,
                         "seconds": 0.2}, ...}}

Top-level ``num_threads`` is the limit found; each country's is what it used
(:mod:`airflow_ml_provider.jobs.threads`). ``rmse_holdout`` is ``null`` when there were too few
rows to hold out.

Every country is attempted even if an earlier one failed; a failed country has no output. Exit
codes: 0 all countries done; 2 bad input (bad arguments, a country without data, missing or
invalid columns); 1 any other failure (e.g. NaN predictions). Progress, warnings and errors are
logged to stdout, a line at a time (:func:`~airflow_ml_provider.jobs.common.job_logger`): the
first line is ``markdown_train: start ...`` and the last ``markdown_train: done ...`` (or
``markdown_train: failed ...``, after one ``markdown_train: error: ...`` line per error).

Runs inside the job container: stdlib, numpy, pandas, pyarrow and lightgbm only (see the package
docstring); lightgbm is imported when training starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from airflow_ml_provider.jobs.common import BadInputError, job_logger, parse_countries, parse_week
from airflow_ml_provider.jobs.markdown_data import (
    SUCCESS,
    TARGET,
    predictions_dir,
    read_country,
    write_predictions,
    write_result,
)
from airflow_ml_provider.jobs.markdown_model import MARKDOWN_GRID, PREDICTION_COLUMNS, JobError, train_country
from airflow_ml_provider.jobs.threads import explicit_threads, num_threads, threads_for

__all__ = [
    "MARKDOWN_GRID",
    "PREDICTION_COLUMNS",
    "BadInputError",
    "JobError",
    "build_parser",
    "main",
    "run_country",
]

DEFAULT_RESULT_PATH = "/airflow/xcom/result.json"
RESULT_PATH_ENV = "ML_RESULT_PATH"


#: ``markdown_train: <message>`` lines on stdout, which reach the task log through the container's output.
LOG = job_logger("markdown_train")


def run_country(root: str, week: str, country: str, limit: int, rounds: int, explicit: bool = False) -> dict[str, Any]:
    """Train and write one country; its entry of the result.

    :param root: the data root (absolute).
    :param week: the week (``YYYY-MM-DD``, checked).
    :param country: the country code (checked).
    :param limit: the thread limit (:func:`~airflow_ml_provider.jobs.threads.num_threads`).
    :param rounds: LightGBM boosting rounds.
    :param explicit: whether ``limit`` was set explicitly (``$ML_NUM_THREADS``): then it is used whatever
        the data size.
    :raises BadInputError: the country's data is missing or invalid.
    :raises JobError: the model gave non-finite predictions.
    """
    started = time.perf_counter()
    data, dropped = read_country(root, week, country)
    if dropped:
        LOG.warning("country=%s dropping %d row(s) without a finite %s", country, dropped, TARGET)
    threads = threads_for(len(data), limit, explicit)
    LOG.info("country=%s rows=%d skus=%d num_threads=%d training", country, len(data), data["sku"].nunique(), threads)
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
    LOG.info(
        "country=%s wrote %s skus=%d rmse_holdout=%s mean_markdown=%s seconds=%s",
        country,
        path,
        len(predictions),
        entry["rmse_holdout"],
        mean_markdown,
        seconds,
    )
    return entry


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 itself; route it through our reporting
        raise BadInputError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line (a usage error raises :class:`BadInputError` instead of exiting)."""
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
        LOG.error("error: %s", message)
    LOG.error("failed exit=%d seconds=%.3f errors: %s", code, time.perf_counter() - started, " | ".join(errors))
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
        week = parse_week(args.week).isoformat()  # the same text: parse_week accepts only YYYY-MM-DD
        countries = parse_countries(args.countries)
        if args.num_boost_round < 1:
            raise BadInputError(f"--num-boost-round must be at least 1, got {args.num_boost_round}")
        threads = num_threads()
        explicit = explicit_threads()
    except BadInputError as e:
        LOG.info("start args=%s", " ".join(args_list))
        return _fail(2, [str(e)], started)
    root = os.path.abspath(args.data_root)
    result_path = args.result_path or os.environ.get(RESULT_PATH_ENV) or DEFAULT_RESULT_PATH
    LOG.info(
        "start countries=%s week=%s data_root=%s num_boost_round=%d num_threads=%d",
        ",".join(countries),
        week,
        root,
        args.num_boost_round,
        threads,
    )
    sales_marker = os.path.join(root, week, "sales", SUCCESS)
    if not os.path.exists(sales_marker):
        LOG.warning("warning: %s does not exist; the dataset may be incomplete", sales_marker)
    # Import once, up front, so a broken install fails before any work and the per-country timings
    # leave it out (lightgbm also imports scikit-learn when that is installed: seconds).
    imported = time.perf_counter()
    try:
        import lightgbm
    except ImportError as e:
        return _fail(1, [f"cannot import lightgbm: {e}"], started)
    LOG.info("lightgbm %s imported in %.3fs", lightgbm.__version__, time.perf_counter() - imported)

    done: dict[str, Any] = {}
    errors: list[str] = []
    code = 0
    for country in countries:
        try:
            done[country] = run_country(root, week, country, threads, args.num_boost_round, explicit)
        except BadInputError as e:
            errors.append(str(e))
            code = code or 2
        except Exception as e:  # any failure of one country: report it, go on with the others
            LOG.error("country=%s raised %s:", country, type(e).__name__, exc_info=True)
            message = str(e) if isinstance(e, JobError) else f"{type(e).__name__}: {e}"
            errors.append(f"country {country}: {message}")
            code = 1
        if country not in done:
            LOG.info("country=%s failed; nothing written for it", country)
    if errors:
        return _fail(code, errors, started)

    result = {"week": week, "num_threads": threads, "countries": done}
    try:
        write_result(result, result_path)
    except (OSError, ValueError) as e:
        return _fail(1, [f"cannot write the result to {result_path}: {e}"], started)
    LOG.info(
        "done countries=%s week=%s result=%s seconds=%.3f",
        ",".join(countries),
        week,
        result_path,
        time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The markdown-pricing model: fit a country's demand, roll its SKUs a week on, recommend markdowns.

A LightGBM Poisson regressor of weekly ``units_sold`` (monotone non-decreasing in ``discount``) is
fit on a country's sales history. For each SKU's state next week (:func:`next_week_state`) it
predicts the weekly units at every candidate markdown of :data:`MARKDOWN_GRID` (0 % to 50 % in
steps of 5 %) and recommends the markdown with the highest expected revenue over the rest of the
SKU's season (ties go to the smaller markdown). Markdowns are fractions of the base price: 0.3
means 30 % off.

Why the rest of the season and not one week: with a price elasticity below -1 (retail demand is
typically -1.5 to -3), one week's revenue grows with every deeper markdown, so a one-week objective
always picks the deepest one. Clearance pricing instead asks what the stock on hand will bring in
before the season ends: the units sold at a markdown are the predicted weekly units times the weeks
left (``days_to_season_end / 7``, at least one week), capped by the stock. A markdown then pays
only where full-price demand would leave stock unsold; a SKU whose stock sells out at full price
keeps it (0 %).

``rmse_holdout`` is the RMSE of weekly units on a random 20 % of the rows held out from a first
fit (the predictions come from a second fit on all rows); ``None`` if there were too few rows to
hold out.

Numpy and pandas only at import; lightgbm is imported when a model is fit (see the package docstring).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

from airflow_ml_provider.jobs.common import BadInputError
from airflow_ml_provider.jobs.markdown_data import TARGET

#: Candidate markdowns: 0 % to 50 % in steps of 5 %, as fractions of the base price.
MARKDOWN_GRID = tuple(round(0.05 * i, 2) for i in range(11))
FEATURES = ("discount", "base_price", "stock", "days_to_season_end", "week_of_year")
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
"""The prediction columns. ``expected_units`` and ``expected_revenue`` are at the recommended markdown,
``units_at_no_markdown`` and ``revenue_at_no_markdown`` at full price (the baseline); all four are
over the rest of the SKU's season (weeks left times the predicted weekly units), capped by its stock."""
HOLDOUT_FRACTION = 0.2
SEED = 42


class JobError(Exception):
    """The job failed on valid input (e.g. NaN predictions): the training job exits with code 1."""


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
    week of year is that of ``week``. A SKU whose season is over by then (7 days or fewer left in
    its latest row) is left out: a longer history (e.g. ingested from a sales table) holds SKUs of
    seasons that have ended, and they have nothing left to price.

    :param data: the country's sales rows (as :func:`~airflow_ml_provider.jobs.markdown_data.read_country` returns).
    :param week: the week being priced (``YYYY-MM-DD``).
    :raises BadInputError: no SKU is still on sale.
    """
    latest = data.sort_values(["sku", "days_to_season_end"], kind="stable").drop_duplicates("sku", keep="first")
    latest = latest[latest["days_to_season_end"].to_numpy() > 7.0]
    if latest.empty:
        raise BadInputError(
            f"no SKU is on sale in week {week}: every SKU's season ends within 7 days of its latest row "
            "(days_to_season_end <= 7); check that the sales data is that week's history"
        )
    return pd.DataFrame(
        {
            "sku": latest["sku"].to_numpy(),
            "base_price": latest["base_price"].to_numpy(),
            "stock": np.maximum(latest["stock"].to_numpy() - latest[TARGET].to_numpy(), 0.0),
            "days_to_season_end": latest["days_to_season_end"].to_numpy() - 7.0,
            "week_of_year": float(dt.date.fromisoformat(week).isocalendar()[1]),
        }
    )


def weeks_left(days_to_season_end: Any) -> np.ndarray:
    """The weeks a SKU can still sell: ``days_to_season_end / 7``, at least the coming week (1.0)."""
    return np.maximum(np.asarray(days_to_season_end, dtype="float64"), 7.0) / 7.0


def recommend(model: Any, state: pd.DataFrame) -> pd.DataFrame:
    """Predict weekly units at every markdown of the grid; pick per SKU the one with the most revenue
    over the rest of its season.

    Units over the season at a markdown = predicted weekly units x :func:`weeks_left`, capped by
    the stock; revenue = those units x the marked-down price. 0 % is a candidate, so the
    recommended revenue is never below the full-price baseline (``revenue_at_no_markdown``).

    :param model: a fitted model with ``predict(features)`` over :data:`FEATURES` (weekly units).
    :param state: one row per SKU, from :func:`next_week_state`.
    :raises JobError: a prediction is not finite (names a few of the SKUs).
    :return: one row per SKU with :data:`PREDICTION_COLUMNS`.
    """
    n, grid = len(state), np.array(MARKDOWN_GRID)
    # One row per (sku, markdown), sku-major.
    candidates = state.loc[state.index.repeat(len(grid))].reset_index(drop=True)
    candidates["discount"] = np.tile(grid, n)
    raw = np.asarray(model.predict(candidates[list(FEATURES)]), dtype="float64").reshape(n, len(grid))
    if not np.isfinite(raw).all():
        bad = state["sku"].to_numpy()[~np.isfinite(raw).all(axis=1)]
        raise JobError(f"non-finite predictions for {len(bad)} SKU(s), e.g. {', '.join(map(str, bad[:5]))}")
    stock = state["stock"].to_numpy(dtype="float64")[:, None]
    weeks = weeks_left(state["days_to_season_end"].to_numpy())[:, None]
    units = np.minimum(np.maximum(raw, 0.0) * weeks, stock)
    revenue = state["base_price"].to_numpy(dtype="float64")[:, None] * (1.0 - grid[None, :]) * units
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
    """Fit, score on a holdout, refit on all rows and recommend.

    :param data: the country's sales rows.
    :param week: the week being priced (``YYYY-MM-DD``).
    :param threads: LightGBM threads.
    :param rounds: boosting rounds of each fit.
    :return: (predictions, holdout RMSE or ``None`` when too few rows to hold out).
    """
    features = data[list(FEATURES)]
    target = data[TARGET].to_numpy()
    n_holdout = int(len(data) * HOLDOUT_FRACTION)
    rmse: float | None = None
    if n_holdout >= 2:
        order = np.random.default_rng(SEED).permutation(len(data))
        test, train = order[:n_holdout], order[n_holdout:]
        model = _fit(features.iloc[train], target[train], _params(threads, len(train)), rounds)
        predicted = np.asarray(model.predict(features.iloc[test]), dtype="float64")
        error = float(np.sqrt(np.mean((predicted - target[test]) ** 2)))
        rmse = error if math.isfinite(error) else None
    model = _fit(features, target, _params(threads, len(data)), rounds)
    return recommend(model, next_week_state(data, week)), rmse

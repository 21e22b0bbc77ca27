"""The markdown recommendation (jobs.markdown_model): revenue over the rest of the season, capped by stock."""

from __future__ import annotations

import lightgbm  # noqa: F401  (dev extra; a missing library must fail, not skip)
import numpy as np
import pandas as pd
import pytest

from airflow_ml_provider.jobs import markdown_model, synthetic
from airflow_ml_provider.jobs.common import BadInputError
from airflow_ml_provider.jobs.markdown_model import MARKDOWN_GRID, PREDICTION_COLUMNS, recommend, weeks_left
from tests.unit.jobs.conftest import WEEK


class ConstantElasticity:
    """A stand-in model: weekly units = ``weekly`` x (1 - discount) ** ``elasticity`` (per SKU by base_price)."""

    def __init__(self, weekly: float, elasticity: float) -> None:
        self.weekly, self.elasticity = weekly, elasticity

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.weekly * (1.0 - features["discount"].to_numpy()) ** self.elasticity


def state(stock: list[float], days: list[float], price: float = 20.0) -> pd.DataFrame:
    n = len(stock)
    return pd.DataFrame(
        {
            "sku": [f"S{i}" for i in range(n)],
            "base_price": [price] * n,
            "stock": stock,
            "days_to_season_end": days,
            "week_of_year": [48.0] * n,
        }
    )


def test_weeks_left_counts_at_least_the_coming_week() -> None:
    assert weeks_left([0, 3, 7, 70]).tolist() == [1.0, 1.0, 1.0, 10.0]


def test_no_markdown_when_stock_is_short_of_the_seasons_full_price_demand() -> None:
    # 10 a week for 8 weeks = 80 at full price; 60 in stock sells out without a markdown.
    out = recommend(ConstantElasticity(10.0, -2.0), state([60.0, 80.0], [56.0, 56.0]))
    assert list(out.columns) == list(PREDICTION_COLUMNS)
    assert out["recommended_markdown"].tolist() == [0.0, 0.0]
    assert out["expected_units"].tolist() == [60.0, 80.0]
    assert out["expected_revenue"].tolist() == pytest.approx([1200.0, 1600.0])
    assert (out["expected_revenue"] == out["revenue_at_no_markdown"]).all()


def test_overstock_gets_the_clearance_markdown_that_sells_it() -> None:
    """Demand 80 at full price, 125 in stock, elasticity -2: 20 % off sells 80 / 0.64 = 125, exactly the stock."""
    out = recommend(ConstantElasticity(10.0, -2.0), state([125.0], [56.0])).iloc[0]
    assert out["recommended_markdown"] == 0.2
    assert out["expected_units"] == pytest.approx(125.0)
    assert out["expected_revenue"] == pytest.approx(20.0 * 0.8 * 125.0)
    assert out["units_at_no_markdown"] == pytest.approx(80.0)
    assert out["revenue_at_no_markdown"] == pytest.approx(1600.0)
    # Uplift (1 - d) ** (1 + e) = 0.8 ** -1 = +25 %: not +100 %.
    assert out["expected_revenue"] / out["revenue_at_no_markdown"] - 1 == pytest.approx(0.25)


def test_the_objective_is_the_season_not_one_week() -> None:
    """One week of 10 units could never clear 125: a one-week objective would pick 50 % off. Over 8 weeks
    the stock binds at 20 %. With 10 weeks left (100 at full price) 10 % off sells 123 of the 125, which
    brings in more than selling all 125 at 15 % off."""
    model = ConstantElasticity(10.0, -2.0)
    assert recommend(model, state([125.0], [7.0]))["recommended_markdown"].tolist() == [0.5]
    assert recommend(model, state([125.0], [56.0]))["recommended_markdown"].tolist() == [0.2]
    assert recommend(model, state([125.0], [70.0]))["recommended_markdown"].tolist() == [0.1]


def test_inelastic_demand_gets_no_markdown_and_elastic_unlimited_stock_the_deepest() -> None:
    assert recommend(ConstantElasticity(10.0, -0.5), state([1e9], [56.0]))["recommended_markdown"].tolist() == [0.0]
    assert recommend(ConstantElasticity(10.0, -2.5), state([1e9], [56.0]))["recommended_markdown"].tolist() == [0.5]


def test_the_recommendation_is_the_best_candidate_and_never_below_the_baseline() -> None:
    rng = np.random.default_rng(0)
    n = 400
    st = state(list(rng.integers(0, 400, n).astype(float)), list(rng.integers(0, 120, n).astype(float)))
    st["base_price"] = rng.uniform(5, 200, n)
    for elasticity in (-3.0, -2.0, -1.5, -0.8):
        out = recommend(ConstantElasticity(6.0, elasticity), st)
        assert (out["expected_revenue"] >= out["revenue_at_no_markdown"]).all()
        assert (out["expected_units"] <= st["stock"]).all()
        # Brute force over the grid: nothing beats the recommended markdown.
        for d in MARKDOWN_GRID:
            units = np.minimum(6.0 * (1 - d) ** elasticity * weeks_left(st["days_to_season_end"]), st["stock"])
            assert (out["expected_revenue"] >= st["base_price"] * (1 - d) * units - 1e-9).all()


def test_trained_on_synthetic_sales_the_recommendations_are_plausible() -> None:
    """Per country: many SKUs at 0 %, some at 10-40 %, revenue +3 % to +45 % over full price (the old
    generator's demand gave +100 % to +220 %)."""
    for country in ("DE", "FR", "IT", "ES"):
        data = synthetic.make_country_frame(country, WEEK, 400, seed=0)
        data = data.astype({c: "float64" for c in synthetic.SALES_COLUMNS if c != "sku"})
        out, _ = markdown_model.train_country(data, WEEK, threads=1, rounds=100)
        markdown = out["recommended_markdown"]
        uplift = out["expected_revenue"].sum() / out["revenue_at_no_markdown"].sum() - 1
        assert 0.03 <= uplift <= 0.45, (country, uplift)
        assert (markdown == 0).mean() >= 0.3, country
        assert markdown.between(0.1, 0.4).sum() >= 3, country
        assert (out["expected_revenue"] >= out["revenue_at_no_markdown"] - 1e-9).all()


def test_next_week_state_rolls_each_sku_on_and_leaves_out_ended_seasons() -> None:
    history = pd.DataFrame(
        {
            "sku": ["A", "A", "B", "C"],
            "week_of_year": [46.0, 47.0, 47.0, 40.0],
            "base_price": [10.0, 10.0, 30.0, 5.0],
            "discount": [0.0, 0.1, 0.0, 0.3],
            "stock": [50.0, 42.0, 9.0, 3.0],
            "days_to_season_end": [35.0, 28.0, 60.0, 5.0],  # C's season ended weeks ago
            "units_sold": [8.0, 6.0, 12.0, 3.0],
        }
    )
    out = markdown_model.next_week_state(history, WEEK)
    assert out["sku"].tolist() == ["A", "B"]
    assert out["stock"].tolist() == [36.0, 0.0]  # left after the latest week; never negative
    assert out["days_to_season_end"].tolist() == [21.0, 53.0]
    assert (out["week_of_year"] == 48.0).all()
    with pytest.raises(BadInputError, match=f"no SKU is on sale in week {WEEK}"):
        markdown_model.next_week_state(history[history["sku"] == "C"], WEEK)

"""Deterministic, realistic datasets for the sample models, so the kit never downloads data:
churn (binary), segment (multiclass, text labels) and demand (regression).

Numeric and categorical columns, missing values, a few weak and noisy features, and a `drift`
knob that moves the live population away from the training one for the monitoring work.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "churned"
CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["card", "bank-transfer", "electronic-check", "mailed-check"]
INTERNET = ["none", "dsl", "fiber"]
REGIONS = ["north", "south", "east", "west"]
DRIFT_REGION = "offshore"  # a category training never saw, appears with drift


def generate_churn(n_rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """`n_rows` customers with the label `churned` (0/1). `drift` in [0, 1] shifts the population:
    shorter tenures, higher charges, more month-to-month contracts and an unseen region."""
    rng = _rng(n_rows, seed, drift)
    n = n_rows

    contract_p = np.array([0.5, 0.3, 0.2]) * (1 - drift) + np.array([0.85, 0.1, 0.05]) * drift
    contract = rng.choice(CONTRACTS, size=n, p=contract_p)
    tenure = np.clip(rng.gamma(2.0, 14.0 * (1 - 0.6 * drift), size=n), 0, 120).round().astype(int)
    internet = rng.choice(INTERNET, size=n, p=[0.15, 0.4, 0.45])
    base_charge = np.select([internet == "none", internet == "dsl"], [25.0, 55.0], 85.0)
    monthly = np.round(base_charge + rng.normal(10 * drift, 12, size=n), 2).clip(15, 160)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, size=n), 2)
    payment = rng.choice(PAYMENTS, size=n, p=[0.3, 0.25, 0.3, 0.15])
    region_p = (
        np.array([0.25, 0.25, 0.25, 0.25, 0.0]) * (1 - drift)
        + np.array([0.15, 0.15, 0.15, 0.15, 0.4]) * drift
    )
    region = rng.choice([*REGIONS, DRIFT_REGION], size=n, p=region_p / region_p.sum())
    support_calls = rng.poisson(1.2 + 1.5 * drift, size=n)
    late_payments = rng.poisson(0.4, size=n)
    products = rng.integers(1, 6, size=n)
    age = np.clip(rng.normal(45, 14, size=n), 18, 90).round().astype(int)
    satisfaction = rng.integers(1, 6, size=n).astype(float)
    usage_gb = np.round(rng.lognormal(3.0, 0.8, size=n) * (internet != "none"), 1)
    discount = np.round(rng.choice([0, 5, 10, 15, 20], size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05]), 0)
    paperless = rng.integers(0, 2, size=n)

    logit = (
        -1.2
        + 1.4 * (contract == "month-to-month")
        - 0.9 * (contract == "two-year")
        - 0.035 * tenure
        + 0.012 * (monthly - 60)
        + 0.45 * support_calls
        + 0.35 * late_payments
        + 0.5 * (payment == "electronic-check")
        + 0.4 * (internet == "fiber")
        - 0.45 * (satisfaction - 3)
        - 0.04 * discount
        - 0.15 * products
        + rng.normal(0, 0.5, size=n)
    )
    churned = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)

    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "contract": contract,
            "payment_method": payment,
            "internet_service": internet,
            "region": region,
            "support_calls": support_calls,
            "late_payments": late_payments,
            "num_products": products,
            "age": age,
            "satisfaction_score": satisfaction,
            "data_usage_gb": usage_gb,
            "discount_pct": discount,
            "paperless_billing": paperless,
            TARGET: churned,
        }
    )
    # Real exports have holes: a few missing charges and many unanswered surveys.
    frame.loc[rng.uniform(size=n) < 0.01, "total_charges"] = np.nan
    frame.loc[rng.uniform(size=n) < 0.15, "satisfaction_score"] = np.nan
    return frame


SEGMENTS = ["basic", "plus", "pro", "enterprise"]
CHANNELS = ["web", "store", "app"]


def generate_segment(n_rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """`n_rows` customers with the label `segment` (text, four classes: a multiclass model).
    `drift` moves them younger, onto the app, with smaller baskets."""
    rng = _rng(n_rows, seed, drift)
    n = n_rows
    age = np.clip(rng.normal(44 - 10 * drift, 13, size=n), 18, 90).round().astype(int)
    income = np.round(rng.lognormal(10.6, 0.5, size=n), -2)
    visits = rng.poisson(3 + 2 * drift, size=n)
    basket = np.round(rng.gamma(3.0, 25.0 * (1 - 0.4 * drift), size=n), 2)
    channel_p = np.array([0.4, 0.35, 0.25]) * (1 - drift) + np.array([0.2, 0.1, 0.7]) * drift
    channel = rng.choice(CHANNELS, size=n, p=channel_p)
    employees = rng.integers(1, 500, size=n) * (rng.uniform(size=n) < 0.3)
    region = rng.choice(REGIONS, size=n)
    business = employees > 0
    z_income, z_basket = (np.log(income) - 10.6) / 0.5, (basket - 75.0) / 43.0
    z_visits = (visits - 3.0) / 1.7
    scores = np.column_stack([
        0.6 - 1.2 * z_income - 1.0 * z_basket,
        0.4 + 1.1 * z_visits + 0.3 * z_basket,
        1.0 * z_income + 0.8 * z_basket + 0.8 * (channel == "app"),
        -1.2 + 2.8 * business + 0.5 * z_income,
    ]) + rng.gumbel(0, 0.5, size=(n, 4))  # fmt: skip
    frame = pd.DataFrame({
        "age": age, "income": income, "visits_per_month": visits, "basket_value": basket,
        "channel": channel, "employees": employees, "region": region,
        "segment": np.array(SEGMENTS)[scores.argmax(axis=1)],
    })  # fmt: skip
    frame.loc[rng.uniform(size=n) < 0.05, "income"] = np.nan
    return frame


DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_EFFECT = (0.0, -2.0, -1.0, 1.0, 6.0, 14.0, 9.0)  # units sold beside Monday's


def generate_demand(n_rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """`n_rows` store-days with the value `daily_demand` (units sold: a regression model).
    `drift` raises prices and temperatures and makes promotions rarer."""
    rng = _rng(n_rows, seed, drift)
    n = n_rows
    store_size = rng.integers(200, 3000, size=n)
    day = rng.choice(DAYS, size=n)
    price = np.round(rng.uniform(2.0, 6.0, size=n) + 1.5 * drift, 2)
    promotion = (rng.uniform(size=n) < 0.25 * (1 - 0.8 * drift)).astype(int)
    temperature = np.round(rng.normal(15 + 10 * drift, 8, size=n), 1)
    region = rng.choice(REGIONS, size=n)
    demand = (
        40
        + 0.02 * store_size
        + pd.Series(day).map(dict(zip(DAYS, _DAY_EFFECT, strict=True))).to_numpy()
        - 6.0 * price
        + 12.0 * promotion
        + 0.4 * temperature
        + rng.normal(0, 4, size=n)
    )
    frame = pd.DataFrame({
        "store_size": store_size, "day_of_week": day, "price": price, "promotion": promotion,
        "temperature": temperature, "region": region,
        "daily_demand": np.round(np.clip(demand, 0, None), 1),
    })  # fmt: skip
    frame.loc[rng.uniform(size=n) < 0.02, "temperature"] = np.nan
    return frame


def _rng(n_rows: int, seed: int, drift: float) -> np.random.Generator:
    if n_rows < 1:
        raise ValueError("n_rows must be at least 1")
    if not 0.0 <= drift <= 1.0:
        raise ValueError("drift must be between 0 and 1")
    return np.random.default_rng(seed)


# Each sample model's generator, by the model's name under ml/models.
SAMPLES = {"churn": generate_churn, "segment": generate_segment, "demand": generate_demand}

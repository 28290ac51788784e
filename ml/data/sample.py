"""A deterministic, realistic churn-style dataset, so the kit never downloads data.

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
    if n_rows < 1:
        raise ValueError("n_rows must be at least 1")
    if not 0.0 <= drift <= 1.0:
        raise ValueError("drift must be between 0 and 1")
    rng = np.random.default_rng(seed)
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

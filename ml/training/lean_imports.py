"""LightGBM without scikit-learn, for the training job's two processes.

`import lightgbm` also imports scikit-learn, and with it SciPy's statistics (about two seconds of
one core), for LightGBM's estimator classes. A training job never uses them: it trains through the
native API, MLflow's LightGBM flavor logs the native booster, and the holdout metrics are NumPy
(ml/training/evaluation.py).
"""

from __future__ import annotations

import sys


def import_lightgbm_alone() -> None:
    """Import LightGBM with scikit-learn hidden from it. Call before anything imports LightGBM;
    where either is loaded already (a test session, a notebook), this changes nothing."""
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # makes `import sklearn` fail
    try:
        import lightgbm  # noqa: F401
    finally:
        del sys.modules["sklearn"]

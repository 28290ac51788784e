"""LightGBM without scikit-learn, for the process that boosts.

`import lightgbm` also imports scikit-learn (two seconds of one core) for LightGBM's estimator
classes. The boosting process never uses them: it trains through the native API, and the
holdout metrics and plots, which do need scikit-learn, are computed in the job's sidecar.
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

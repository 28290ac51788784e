"""Direct calls into LightGBM's C API for prediction.

`Booster.predict` rebuilds a predictor and re-checks its input on every call, which costs more
than scoring one row through 200 trees; the server has already validated the matrix, so it
calls `LGBM_BoosterPredictForMat` itself with parameters prepared once.
"""

from __future__ import annotations

import ctypes

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_ROW_MAJOR = 1
_PREDICT_NORMAL = 0


class FastPredictor:
    kind = "lightgbm"

    def __init__(self, booster: lgb.Booster, num_threads: int = 1) -> None:
        self._booster = booster  # keeps the handle alive
        self._handle = booster._handle
        self._outputs = booster.num_model_per_iteration()
        self._features = booster.num_feature()
        self._params = ctypes.c_char_p(f"num_threads={num_threads}".encode())
        # Same iterations as Booster.predict's default (the best iteration when one was kept).
        self._iterations = ctypes.c_int(booster.best_iteration or -1)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        rows, columns = data.shape
        if columns != self._features:
            raise ValueError(f"{columns} features given, the model has {self._features}")
        out = np.empty(rows * self._outputs, dtype=np.float64)
        written = ctypes.c_int64(0)
        _safe_call(
            _LIB.LGBM_BoosterPredictForMat(
                self._handle,
                data.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(rows),
                ctypes.c_int32(columns),
                ctypes.c_int(_ROW_MAJOR),
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),
                self._iterations,
                self._params,
                ctypes.byref(written),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        return out if self._outputs == 1 else out.reshape(rows, self._outputs)

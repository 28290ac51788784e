"""The bare LightGBM script `make bench training` holds `modelyard train` against: what a data
scientist writes by hand for the same job, and nothing else. It reads the same file, trains on the
same rows (modelyard's split, same fractions and seed) with the same parameters and the same
validation set scored each round, scores the holdout and saves the model.

    python benchmarks/_bare_lightgbm.py DATA.parquet TARGET MODEL_OUT ROUNDS PARAMS_JSON
"""

from __future__ import annotations

import json
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
from modelyard.ml.training.features import stratified_split


def main(data: str, target: str, model_out: str, rounds: int, params: dict[str, object]) -> None:
    frame = pd.read_parquet(data)
    labels = frame[target].to_numpy()
    features = frame.drop(columns=[target])
    split = stratified_split(labels, 0.2, 0.2, 42)
    train = lgb.Dataset(features.iloc[split.train], labels[split.train])
    valid = lgb.Dataset(features.iloc[split.valid], labels[split.valid], reference=train)
    booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=[valid])
    scores = booster.predict(features.iloc[split.holdout])
    booster.save_model(model_out)
    print(json.dumps({"roc_auc": _auc(labels[split.holdout], np.asarray(scores))}))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    ranks = pd.Series(scores).rank().to_numpy()
    positive = labels == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5]))

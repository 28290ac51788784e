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
from modelyard.contracts.environment.training import TrainingSettings
from modelyard.ml.training.evaluation import roc_auc, threshold_counts
from modelyard.ml.training.features import stratified_split

# modelyard's default split: the fractions and seed `modelyard train` uses when none are set.
DEFAULTS = {name: TrainingSettings.model_fields[name].default
            for name in ("validation_fraction", "holdout_fraction", "seed")}  # fmt: skip


def main(data: str, target: str, model_out: str, rounds: int, params: dict[str, object]) -> None:
    frame = pd.read_parquet(data)
    labels = frame[target].to_numpy()
    features = frame.drop(columns=[target])
    split = stratified_split(labels, DEFAULTS["validation_fraction"], DEFAULTS["holdout_fraction"],
                             DEFAULTS["seed"])  # fmt: skip
    train = lgb.Dataset(features.iloc[split.train], labels[split.train])
    valid = lgb.Dataset(features.iloc[split.valid], labels[split.valid], reference=train)
    booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=[valid])
    scores = booster.predict(features.iloc[split.holdout])
    booster.save_model(model_out)
    counts = threshold_counts(labels[split.holdout], np.asarray(scores))
    print(json.dumps({"roc_auc": roc_auc(counts)}))  # as modelyard's holdout metrics compute it


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5]))

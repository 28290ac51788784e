"""The model server: MLflow's scoring protocol over a LightGBM booster, fast, safe, observable."""

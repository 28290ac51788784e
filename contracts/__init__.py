"""The ground floor every part of the kit stands on: the typed environment model and every name
two parts share (MLflow tags, artifact paths, variables, the state folder's layout)."""

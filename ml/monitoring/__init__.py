"""Monitoring: the training reference profile, live samples from the server, drift against it."""

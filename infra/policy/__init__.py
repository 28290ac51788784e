"""The serving policy: plain rule functions (rules.py) and the Pulumi policy pack (__main__.py)."""

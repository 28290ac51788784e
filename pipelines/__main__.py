"""`python -m pipelines`: the `modelyard` command where it is not installed (the training image)."""

from pipelines.cli import main

main()

"""`python -m modelyard.pipelines`: the `modelyard` command where it is not installed (the training image)."""

from modelyard.pipelines.cli import main

main()

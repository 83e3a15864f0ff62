"""python -m chatlike_runner.train: the same as the chatlike-train command."""

from .cli import main

main()

"""python -m chatlike_runner.train: the same as the chatlike-train command."""

from .entrypoint import main

main()

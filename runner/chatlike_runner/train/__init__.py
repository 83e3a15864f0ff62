"""chatlike-train: the entrypoint inside the training image (Axolotl, torch: imported lazily, never by the runner)."""

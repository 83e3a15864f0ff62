"""What the host's runner and the image's chatlike-train both run: names and paths, the one error type, reading a
config, unpacking a tar stream, reading a training log. It imports nothing of chatlike_runner outside itself (a test
checks), so nothing of the engine, the plan or the CLI can break the image by being imported there."""

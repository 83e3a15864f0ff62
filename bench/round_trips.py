"""Count the Docker engine round trips (HTTP requests to its API) of `start`, `eval` and `resume`: the CPU smoke
config on the bundled example, followed to its end; `eval` of that run; a detached run stopped with `stop`, then
`resume`d. Each command runs in a process of its own with every request counted, and the requests that were made
more than once are listed. Needs the CPU image (`make image-cpu`); about 3 minutes on 2 cores.

    .venv/bin/python bench/round_trips.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Runs chatlike-runner in this process, each request to the engine counted; the counts go to stderr as JSON.
COUNTED = """
import atexit, collections, json, re, sys, requests
calls = []
send = requests.Session.send
def counted(self, request, **kw):
    path = re.sub(r"/[0-9a-f]{64}", "/ID", request.path_url.split("?")[0])
    calls.append(f"{request.method} {path}")
    return send(self, request, **kw)
requests.Session.send = counted
atexit.register(lambda: sys.stderr.write("\\nROUND TRIPS " + json.dumps(collections.Counter(calls)) + "\\n"))
from chatlike_runner.cli import main
sys.argv[0] = "chatlike-runner"
main()
"""


def counted(*args: str) -> tuple[dict[str, int], str]:
    """The command's requests, by method and path (a container's id as ID), and its stdout."""
    done = subprocess.run([sys.executable, "-c", COUNTED, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"chatlike-runner {' '.join(args)} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    line = next(line for line in reversed(done.stderr.splitlines()) if line.startswith("ROUND TRIPS "))
    return json.loads(line.removeprefix("ROUND TRIPS ")), done.stdout


def runner(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "chatlike_runner", *args], check=True, capture_output=True,
                          text=True).stdout


def report(command: str, calls: dict[str, int]) -> None:
    repeated = ", ".join(f"{call} x{n}" for call, n in sorted(calls.items(), key=lambda item: -item[1]) if n > 1)
    print(f"{command:<28} {sum(calls.values()):>3} round trips; repeated: {repeated or 'none'}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="chatlike-trips-") as tmp:
        project = Path(tmp)
        runner("prepare", "-o", str(project / "data"))
        start = ("start", str(REPO / "configs" / "cpu-smoke.yml"), "--data", str(project / "data" / "train.jsonl"),
                 "--image", "chatlike/train:cpu", "--out", str(project / "outputs"))
        calls, out = counted(*start)
        run = next(word for word in out.split() if word[:8].isdigit() and word.count("-") == 2)
        report("start (followed to its end)", calls)
        report("eval", counted("eval", run, "--samples", "3", "--out", str(project / "outputs"))[0])
        calls, out = counted(*start, "--detach")
        report("start --detach", calls)
        detached = next(word for word in out.split() if word[:8].isdigit() and word.count("-") == 2)
        runner("stop", detached)
        report("resume (its container kept)", counted("resume", detached, "--out", str(project / "outputs"))[0])
        for run_id in (run, detached):
            runner("rm", "--force", run_id)


if __name__ == "__main__":
    main()

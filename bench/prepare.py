"""Benchmark `chatlike-runner prepare` on a synthetic export against the classic Part 1 script (json.load and plain
loops: bench/part1_baseline.py) and against a bare json.load of the same file.

Each runs as a subprocess; peak RSS comes from os.wait4's rusage of each one. Targets: prepare's wall time at
most 0.5x the Part 1 script's and at most json.load's; its peak RSS under 100 MiB whatever the size.

    .venv/bin/python bench/prepare.py            # ~1 GB
    .venv/bin/python bench/prepare.py --mb 100   # quicker
    .venv/bin/python bench/prepare.py --export /tmp/result.json   # an export made before (or a real one)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ijson

REPO = Path(__file__).resolve().parents[1]
# Bytes of export per personal-chat conversation made by examples/make_export.py (measured on the example).
BYTES_PER_SESSION = 9_000
LOAD = "import json, sys; d = json.load(open(sys.argv[1], 'rb')); " \
       "print(sum(len(c['messages']) for k in ('chats', 'left_chats') for c in d.get(k, {}).get('list', [])))"


def _make_export(path: Path, megabytes: int) -> None:
    """In a subprocess, so that this process stays small: a forked child starts with its parent's peak RSS."""
    sessions = max(1, megabytes * 1_000_000 // BYTES_PER_SESSION)
    subprocess.run([sys.executable, str(REPO / "examples" / "make_export.py"), str(path), "--sessions", str(sessions)],
                   check=True)


def _run(argv: list[str], stdin: Path | None = None) -> tuple[float, int, str]:
    """Seconds, peak RSS in MiB and output of one subprocess (reading `stdin`, its output dropped, when given),
    reaped with wait4 to read its own rusage."""
    started = time.monotonic()
    if stdin is None:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = child.stdout.read().decode()
    else:  # a process that reads a file and writes bytes nobody needs
        with stdin.open("rb") as source:
            child = subprocess.Popen(argv, stdin=source, stdout=subprocess.DEVNULL)
        out = ""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv[:4])} failed: {out[-2000:]}")
    return seconds, usage.ru_maxrss // 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1000, help="size of the synthetic export in MB")
    parser.add_argument("--export", type=Path, help="use this export instead of making one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatlike-bench-") as temp:
        export = args.export or Path(temp) / "result.json"
        started = time.monotonic()
        if args.export is None:
            _make_export(export, args.mb)
        size = export.stat().st_size / 2**20
        print(f"export: {size:.0f} MiB" + ("" if args.export else f", made in {time.monotonic() - started:.0f} s"))
        prep_s, prep_rss, _ = _run([sys.executable, "-m", "chatlike_runner", "prepare", str(export), "-o",
                                    str(Path(temp) / "out")])
        report = json.loads((Path(temp) / "out" / "report.json").read_text())
        # prepare parses in a second process (wait4 gives the larger of the two peaks): that one alone, to add it
        _, parser_rss, _ = _run([sys.executable, "-m", "chatlike_runner.prepare.telegram"], stdin=export)
        load_s, load_rss, count = _run([sys.executable, "-c", LOAD, str(export)])
        part1_s, part1_rss, _ = _run([sys.executable, str(REPO / "bench" / "part1_baseline.py"), str(export),
                                      str(Path(temp) / "part1.jsonl")])
        messages = int(count.split()[-1])
    print(f"ijson backend: {ijson.backend_name}; {messages} messages, {report['samples']['train']} train samples")
    print(f"prepare:   {prep_s:7.1f} s  {messages / prep_s:10.0f} messages/s  peak RSS {prep_rss:6d} MiB "
          f"(+ {parser_rss} MiB of its parser process)")
    print(f"Part 1:    {part1_s:7.1f} s  {messages / part1_s:10.0f} messages/s  peak RSS {part1_rss:6d} MiB")
    print(f"json.load: {load_s:7.1f} s  {messages / load_s:10.0f} messages/s  peak RSS {load_rss:6d} MiB")
    print(f"ratios: time {prep_s / part1_s:.2f}x the Part 1 script (target <= 0.5), {prep_s / load_s:.2f}x json.load "
          f"(target <= 1); peak RSS {(prep_rss + parser_rss) / load_rss:.3f}x json.load, {prep_rss + parser_rss} MiB "
          "for both processes (target < 100)")


if __name__ == "__main__":
    main()

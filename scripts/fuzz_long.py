"""The fuzz long mode: tests/fuzz in four pytest processes at once, then the figures.

    fuzz_long.py [--log-dir DIR] [pytest args...]

Each process runs its share of tests/fuzz with HOSTDEV_FUZZ=long (10,000 inputs per entry
point unless HOSTDEV_FUZZ_EXAMPLES says otherwise) and writes its output to DIR/<share>.log.
At the end: each share's outcome and time, the inputs fed to each entry point (summed over
the shares), and the whole run's time. The services under test run in the pytest process
and Hypothesis draws in a thread of it, so one process keeps one core busy at most; the
shares are balanced by what their inputs cost: the preparer's NATS subjects weigh as much as
all the other subjects, or as the kubelet sockets, the API answers and the selection file
together; the calls of thousands of claims (500 of them by default) take a share alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUZZ = "tests/fuzz"
SHARES = {
    "nats-preparer": [f"{FUZZ}/test_fuzz_nats.py", "-k", "preparer"],
    "nats-others": [f"{FUZZ}/test_fuzz_nats.py", "-k", "not preparer"],
    "grpc+api+config": [
        f"{FUZZ}/test_fuzz_grpc.py",
        f"{FUZZ}/test_fuzz_apiserver.py",
        f"{FUZZ}/test_fuzz_config.py",
        "-k",
        "not thousands_of_claims",
    ],
    "grpc-thousands-of-claims": [f"{FUZZ}/test_fuzz_grpc.py", "-k", "thousands_of_claims"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=None)
    args, pytest_args = parser.parse_known_args()
    log_dir: Path = args.log_dir or Path(tempfile.mkdtemp(prefix="hostdev-fuzz-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOSTDEV_FUZZ": os.environ.get("HOSTDEV_FUZZ", "long")}
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
    for share, files in SHARES.items():
        counts = log_dir / f"{share}.counts.json"
        log = (log_dir / f"{share}.log").open("wb")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        process = subprocess.Popen(
            [*command, *files, *pytest_args],
            cwd=REPO,
            env={**env, "HOSTDEV_FUZZ_COUNTS": str(counts)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running[share] = (process, counts, time.monotonic())
        print(f"fuzz: {share} started, output in {log_dir / f'{share}.log'}", flush=True)
    totals: Counter[str] = Counter()
    failed = []
    while running:
        time.sleep(1)  # the shares run for many minutes; each is reported as it ends
        for share, (process, counts, began) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            del running[share]
            minutes = (time.monotonic() - began) / 60
            print(
                f"fuzz: {share} {'passed' if code == 0 else 'FAILED'} in {minutes:.1f} min",
                flush=True,
            )
            if code != 0:
                failed.append(share)
            if counts.exists():
                totals.update(json.loads(counts.read_text()))
    print("fuzz inputs per entry point:")
    for name, count in sorted(totals.items()):
        print(f"{count:>8}  {name}")
    minutes = (time.monotonic() - started) / 60
    print(f"fuzz: {len(totals)} entry points, {sum(totals.values())} inputs, {minutes:.1f} min")
    if failed:
        print(f"fuzz: findings in {', '.join(failed)}: see their logs in {log_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

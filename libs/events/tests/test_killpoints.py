"""The campaign's kill points: a no-op unless armed; armed, the Nth event of a kind kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hostdev_events import killpoints

THREE_READS = (
    "from hostdev_events import killpoints\n"
    "for _ in range(3):\n"
    "    killpoints.reached(killpoints.KV_READ)\n"
    "killpoints.reached(killpoints.KV_WRITE)\n"
    "print('survived')\n"
)


def _run(
    env: dict[str, str], script: str = THREE_READS, *args: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTDEV_CHAOS_")}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_unarmed_process_runs_through_every_point() -> None:
    assert _run({}).stdout == "survived\n"


def test_process_is_sigkilled_at_the_nth_event_of_its_kind() -> None:
    done = _run({killpoints.KILL_AT: "kv.read:2"})
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == ""


def test_a_point_past_the_last_event_never_fires() -> None:
    assert _run({killpoints.KILL_AT: "kv.read:4"}).stdout == "survived\n"


def test_counting_run_records_every_event_by_kind(tmp_path: Path) -> None:
    counts = tmp_path / "events"
    assert _run({killpoints.COUNT_FILE: str(counts)}).stdout == "survived\n"
    assert counts.read_text().splitlines() == ["kv.read"] * 3 + ["kv.write"]


def test_kill_pid_kills_that_process_and_carries_on() -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        done = _run({killpoints.KILL_AT: "kv.write:1", killpoints.KILL_PID: str(victim.pid)})
        assert done.stdout == "survived\n"
        assert victim.wait(timeout=10) == -signal.SIGKILL
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("value", ["kv.read", "kv.read:0", "disk.spin:1", "kv.read:x"])
def test_malformed_kill_point_is_refused_with_the_variable_name(value: str) -> None:
    done = _run({killpoints.KILL_AT: value})
    assert done.returncode == 1
    assert killpoints.KILL_AT in done.stderr


# A worker thread in untearable work (as the fake kernel's reaction to a sysfs write) while
# the main thread reaches the point that kills: the work ends first, and only then the kill.
KILL_DURING_WORK = (
    "import sys, threading\n"
    "from hostdev_events import killpoints\n"
    "inside, killing = threading.Event(), threading.Event()\n"
    "def work():\n"
    "    with killpoints.UNTORN:\n"
    "        inside.set()\n"
    "        killing.wait()\n"
    "        open(sys.argv[1], 'w').write('finished')\n"
    "threading.Thread(target=work).start()\n"
    "inside.wait()\n"
    "killing.set()\n"
    "killpoints.reached(killpoints.NATS_REQUEST)\n"
    "print('survived')\n"
)


def test_a_kill_waits_for_untorn_work_in_another_thread_to_end(tmp_path: Path) -> None:
    marker = tmp_path / "work"
    done = _run({killpoints.KILL_AT: "nats.request:1"}, KILL_DURING_WORK, str(marker))
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == ""
    assert marker.read_text() == "finished"


def test_a_point_reached_inside_untorn_work_kills_there() -> None:
    script = (
        "from hostdev_events import killpoints\n"
        "with killpoints.UNTORN:\n"
        "    killpoints.reached(killpoints.SYSFS_WRITE)\n"
        "print('survived')\n"
    )
    done = _run({killpoints.KILL_AT: "sysfs.write:1"}, script)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == ""

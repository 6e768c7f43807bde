"""The workspace installs `hostdev` as a console script; it runs as its own process."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from hostdev_testing.fakesysfs import SmallVm


async def _run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_installed_script_scans_the_small_vm(vm: SmallVm) -> None:
    """`hostdev inventory --json` from the environment's bin directory."""
    script = Path(sys.executable).parent / "hostdev"
    code, out, err = await _run(str(script), "inventory", "--root", str(vm.root), "--json")
    assert code == 0, err
    assert [d["name"] for d in json.loads(out)["devices"]] == ["kvm", "tun"]
    assert err == ""  # the families' warnings become reasons, not log noise


async def test_unknown_subcommand_is_exit_2_with_usage() -> None:
    """argparse's own refusal keeps exit code 2."""
    code, _, err = await _run(sys.executable, "-m", "hostdev_cli", "frobnicate")
    assert code == 2
    assert "invalid choice: 'frobnicate'" in err

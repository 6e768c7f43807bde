"""Run the hostdev command in-process, through its own entry point, and keep what it printed."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostdev_cli.main import run_async


@dataclass(frozen=True)
class Ran:
    """One run of the command: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as JSON."""
        return json.loads(self.out)


async def hostdev(*argv: str | Path) -> Ran:
    """`await hostdev("inventory", "--root", root)`, as `hostdev inventory --root ROOT`."""
    out, err = io.StringIO(), io.StringIO()
    code = await run_async([str(a) for a in argv], out=out, err=err)
    return Ran(code, out.getvalue(), err.getvalue())

"""Imports made lazy: the module loads on first use, not when it is imported.

nats-py imports aiohttp and multidict when they are installed, for a WebSocket transport the
services never use (they connect with nats:// or tls://). They are installed, since
discovery and the preparer talk to the API server with aiohttp, and in the other services
that one import was about 10 MiB of resident memory and a third of the start-up imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

# What nats-py imports only for its WebSocket transport.
NATS_WEBSOCKET = ("aiohttp", "multidict")


class Deferred(types.ModuleType):
    """Stands in for a module, in sys.modules, until one of its attributes is asked for;
    then the module is imported and takes its place, and the stand-in forwards to it.

    importlib's LazyLoader does not do here: on Python 3.11 the next `import` statement of
    the module reads its __spec__, which loads it.
    """

    def __getattr__(self, attr: str) -> Any:
        # Only called for what the stand-in lacks: everything but its name and spec.
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def defer(*names: str) -> None:
    """Make `import name` bind a stand-in that imports the module on first use.

    Call it before anything imports `name`. A module already imported, or not installed,
    is left as it is (an `import` of one that is missing still fails as it would).
    """
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = Deferred(name)
        # The import system reads __spec__ of a module it finds in sys.modules (to see
        # whether it is still being initialised); it must not need the module for that.
        stand_in.__spec__ = spec
        sys.modules[name] = stand_in

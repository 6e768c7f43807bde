"""The device selection file, fuzzed: random bytes, YAML and JSON shaped like the selection,
mutated away from it, YAML tags and alias bombs. Loading gives a DevicesConfig or a
ConfigError; what loads is then discovered on the acceptance host without a crash, a write,
or a device name that cannot be a KV key."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from hostdev_events import subjects
from hostdev_families import ConfigError, DevicesConfig, build_families, load_config
from hostdev_families.registry import discover_all
from hostdev_sysfs.root import HostRoot
from hostdev_sysfs.writer import ReadOnlyWriter
from hostdev_testing import fuzz
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import SampleHost

# A Kubernetes device name (ResourceSlice devices[].name): a DNS label.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _alias_bomb(levels: int) -> bytes:
    """Each level lists the previous one ten times: 10**levels leaves if expanded."""
    lines = ["l0: &l0 {path: /dev/kvm}"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    lines.append(f"hostPaths: *l{levels}")
    return "\n".join(lines).encode()


FIXED = (
    b"!!python/object/apply:os.system ['true']",
    b"\xef\xbb\xbfpci: []",
    b"\xff\xfe",
    b"hostPaths: [{path: !!binary aGVsbG8=}]",
    b"<<: {pci: [{vendor: '8086'}]}",
    b"resources: [{name: a, shares: 99999999999999999999999}]",
    _alias_bomb(7),
)


def _yaml(value: Any) -> bytes:
    try:
        return yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, UnicodeEncodeError):
        return fuzz.encode(value)


def selections() -> st.SearchStrategy[bytes]:
    """What an operator (or a broken ConfigMap) may put in the selection file."""
    shaped = fuzz.shaped(DevicesConfig)
    return st.one_of(
        st.sampled_from(FIXED),
        st.binary(max_size=256),
        shaped.map(fuzz.encode),
        shaped.map(_yaml),
        fuzz.json_values().map(_yaml),
        st.builds(
            lambda value, junk: fuzz.encode({**value, **junk}),
            shaped,
            st.dictionaries(fuzz.texts(), fuzz.json_values(), max_size=2),
        ),
    )


def test_selection_file_loads_or_is_refused_with_a_config_error(sample: SampleHost) -> None:
    """Every input: a DevicesConfig or a ConfigError naming the file; one that loads is
    discovered with the read-only writer, and every device it yields has a name usable as a
    KV key and as a ResourceSlice device name."""
    root = HostRoot(sample.root)
    loaded = 0
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "devices.yaml"

        def check(data: bytes) -> None:
            nonlocal loaded
            path.write_bytes(data)
            try:
                config = load_config(path)
            except ConfigError as err:
                refused = str(err)
            else:
                refused = ""
            if refused:
                assert str(path) in refused
                return
            assert isinstance(config, DevicesConfig)
            loaded += 1
            families = build_families(config, root, ReadOnlyWriter(), FakeNetlink(sample.root))
            for device in discover_all(families):
                assert DNS_LABEL.match(device.name), device.name
                subjects.device_key("node-a", device.name)

        fuzz.run("config load_config + discovery", selections(), check)
    assert loaded, "no input loaded; the strategy no longer produces selections"

"""The schema copies in tests/schemas are the upstream files their README names."""

from __future__ import annotations

import hashlib
import re

from hostdev_testing.schemas import VENDORED_SCHEMAS


def git_blob_id(content: bytes) -> str:
    """What `git hash-object` prints for a file with this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def test_every_vendored_schema_matches_the_blob_id_its_readme_records() -> None:
    readme = (VENDORED_SCHEMAS / "README.md").read_text()
    recorded = dict(re.findall(r"^\| `([^`]+\.json)` \|.*\| `([0-9a-f]{40})` \|$", readme, re.M))
    on_disk = {path.name for path in VENDORED_SCHEMAS.glob("*.json")}
    assert set(recorded) == on_disk
    for name, blob in recorded.items():
        assert git_blob_id((VENDORED_SCHEMAS / name).read_bytes()) == blob, name

"""Subject and key builders: one token per node, reversible encoding, no path tricks."""

from __future__ import annotations

import pytest

from hostdev_events import subjects


def test_node_with_dots_becomes_one_subject_token() -> None:
    """Dots in node names would split the subject, so they are encoded as underscores."""
    assert subjects.claims_prepare("worker-1.example.com") == (
        "hostdev.v1.worker-1_example_com.claims.prepare"
    )
    assert (
        subjects.node_from_token(subjects.node_token("worker-1.example.com"))
        == "worker-1.example.com"
    )


@pytest.mark.parametrize("bad", ["", "Upper", "a b", "a*b", "a>b", "x_y", "-lead", "a" * 254])
def test_invalid_node_names_are_refused(bad: str) -> None:
    """Names that are not Kubernetes node names cannot become subjects (no wildcards, no spaces)."""
    with pytest.raises(subjects.InvalidName):
        subjects.node_token(bad)


@pytest.mark.parametrize("bad", ["a.b", "a/b", "a b", "*", ""])
def test_kv_keys_refuse_separators_in_names(bad: str) -> None:
    """Device names and claim UIDs with dots, slashes or wildcards cannot address another key."""
    with pytest.raises(subjects.InvalidName):
        subjects.device_key("node-1", bad)
    with pytest.raises(subjects.InvalidName):
        subjects.checkpoint_key("node-1", bad)


def test_kv_keys_refuse_names_too_long_for_a_nats_protocol_line() -> None:
    """A key is part of a subject; a subject past nats-server's 4096-byte protocol line
    makes the server drop the whole connection, so a 70,000-character name is refused
    (named by its length, not quoted whole) and the longest allowed part still fits."""
    with pytest.raises(subjects.InvalidName, match="70000 characters") as refused:
        subjects.device_key("node-1", "y" * 70_000)
    assert len(str(refused.value)) < 200
    with pytest.raises(subjects.InvalidName):
        subjects.checkpoint_key("node-1", "u" * (subjects.MAX_KEY_PART + 1))
    longest = subjects.checkpoint_key("a" * 253, "u" * subjects.MAX_KEY_PART)
    assert len(f"PUB $KV.hostdev-checkpoints.{longest} _INBOX_preparer.{'x' * 64} 1048576") < 4096


def test_keys_are_scoped_by_node() -> None:
    """Every key of a node starts with the node's prefix."""
    key = subjects.device_key("n.1", "kvm")
    assert key.startswith(subjects.device_key_prefix("n.1"))
    assert key == "n_1.kvm"

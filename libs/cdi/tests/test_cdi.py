"""CDI specs: names, minimum version, validation and atomic files."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hostdev_cdi import (
    ContainerEdits,
    Device,
    DeviceNode,
    InvalidSpec,
    Mount,
    Spec,
    encode_spec,
    minimum_version,
    names,
    owned_files,
    remove_owned,
    validate,
    write_atomic,
)


def _spec(**edits: object) -> Spec:
    return Spec(
        cdi_version="0.3.0",
        kind="k8s.hostdev.k8s.io/device",
        devices=(Device(name="uid-kvm", container_edits=ContainerEdits(**edits)),),  # type: ignore[arg-type]
    )


def test_minimum_version_follows_the_features_used() -> None:
    """Plain nodes need 0.3.0, typed mounts 0.4.0, host paths 0.5.0, annotations 0.6.0."""
    assert minimum_version(_spec(device_nodes=(DeviceNode(path="/dev/kvm"),))) == "0.3.0"
    assert (
        minimum_version(_spec(mounts=(Mount(host_path="/a", container_path="/b", type="bind"),)))
        == "0.4.0"
    )
    assert (
        minimum_version(_spec(device_nodes=(DeviceNode(path="/dev/kvm", host_path="/dev/kvm"),)))
        == "0.5.0"
    )
    annotated = msgspec.structs.replace(_spec(), annotations={"a": "b"})
    assert minimum_version(annotated) == "0.6.0"
    gids = _spec(additional_gids=(5,))
    assert minimum_version(gids) == "0.7.0"


def test_device_name_starting_with_digit_needs_0_5_0() -> None:
    """Claim UIDs often start with a digit, which CDI allows only from 0.5.0."""
    spec = Spec(
        cdi_version="0.3.0",
        kind="a.b/c",
        devices=(Device(name="1abc", container_edits=ContainerEdits()),),
    )
    assert minimum_version(spec) == "0.5.0"


@pytest.mark.parametrize(
    "spec",
    [
        Spec(cdi_version="0.3.0", kind="a.b/c", devices=()),
        Spec(
            cdi_version="9.9.9",
            kind="a.b/c",
            devices=(Device(name="d", container_edits=ContainerEdits()),),
        ),
        Spec(
            cdi_version="0.3.0",
            kind="nokind",
            devices=(Device(name="d", container_edits=ContainerEdits()),),
        ),
        Spec(
            cdi_version="0.3.0",
            kind="a.b/c",
            devices=(Device(name="-d", container_edits=ContainerEdits()),),
        ),
        Spec(
            cdi_version="0.3.0",
            kind="a.b/c",
            devices=(Device(name="d", container_edits=ContainerEdits(env=("=x",))),),
        ),
        Spec(
            cdi_version="0.3.0",
            kind="a.b/c",
            devices=(
                Device(
                    name="d",
                    container_edits=ContainerEdits(
                        device_nodes=(DeviceNode(path="/x", host_path="/y"),)
                    ),
                ),
            ),
        ),
    ],
    ids=["no-devices", "unknown-version", "bad-kind", "bad-name", "bad-env", "version-too-low"],
)
def test_invalid_specs_are_refused(spec: Spec) -> None:
    """Specs a CDI reader would reject never pass validation."""
    with pytest.raises(InvalidSpec):
        validate(spec)


@pytest.mark.parametrize("owner", ["../x", "a/b", "..", "", ".hidden", "a" * 200])
def test_owners_with_path_tricks_are_refused(owner: str) -> None:
    """An owner cannot steer a spec file outside its directory or hide it."""
    with pytest.raises(InvalidSpec):
        names.spec_file_name("a.b/c", owner)


def test_write_is_atomic_and_removal_is_by_owner(tmp_path: Path) -> None:
    """Files are written whole with no temp files left; removal touches only the owner's files."""
    data = encode_spec(_spec())
    write_atomic(tmp_path, names.spec_file_name("a.b/c", "u1"), data)
    write_atomic(tmp_path, names.spec_file_name("a.b/c", "u2"), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.b-c_u1.json", "a.b-c_u2.json"]
    assert (tmp_path / "a.b-c_u1.json").read_bytes() == data
    assert [p.name for p in remove_owned(tmp_path, "u1")] == ["a.b-c_u1.json"]
    assert [p.name for p in owned_files(tmp_path, "u2")] == ["a.b-c_u2.json"]


def test_qualified_id_joins_kind_and_name() -> None:
    """The runtime resolves `vendor/class=name`."""
    kind = names.kind(names.vendor_for("hostdev.k8s.io"), names.DEVICE_CLASS)
    assert names.qualified(kind, "0a-kvm") == "k8s.hostdev.k8s.io/device=0a-kvm"

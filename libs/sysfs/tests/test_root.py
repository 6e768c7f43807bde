"""HostRoot maps host paths under its root with strings: the same answers pathlib gave."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from hostdev_sysfs import HostRoot, PathEscapesRoot

TRICKY = ["/dev/kvm", "//dev//kvm/", "/dev/./kvm", "///dev/dri/./card0", "/", "///", "/./"]


@pytest.mark.parametrize("host_path", TRICKY)
def test_a_host_path_maps_where_pathlib_joins_it(tmp_path: Path, host_path: str) -> None:
    """Repeated slashes, `.` and a trailing slash are dropped as pathlib drops them."""
    root = HostRoot(tmp_path)
    expected = tmp_path.resolve().joinpath(*PurePosixPath(host_path).parts[1:])
    assert root.path(host_path) == expected
    assert root.real(host_path) == str(expected)


@pytest.mark.parametrize("host_path", ["dev/kvm", "", "/dev/../etc/shadow", "/.."])
def test_relative_and_dotdot_paths_are_refused(tmp_path: Path, host_path: str) -> None:
    root = HostRoot(tmp_path)
    with pytest.raises(PathEscapesRoot):
        root.real(host_path)
    with pytest.raises(PathEscapesRoot):
        root.exists(host_path)


def test_the_real_root_maps_host_paths_to_themselves() -> None:
    root = HostRoot("/")
    assert root.real("/dev/kvm") == "/dev/kvm"
    assert root.real("//dev/./kvm") == "/dev/kvm"
    assert root.real("/") == "/"


def test_exists_says_no_for_dangling_links_and_paths_below_a_file(tmp_path: Path) -> None:
    """As Path.exists: ENOENT, ENOTDIR and ELOOP are "not there"."""
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "kvm").write_bytes(b"")
    (tmp_path / "dev" / "dangling").symlink_to("nowhere")
    (tmp_path / "dev" / "loop").symlink_to("loop")
    root = HostRoot(tmp_path)
    assert root.exists("/dev/kvm")
    assert root.exists("/dev")
    assert not root.exists("/dev/missing")
    assert not root.exists("/dev/dangling")
    assert not root.exists("/dev/kvm/below-a-file")
    assert not root.exists("/dev/loop")


def test_glob_gives_sorted_host_paths(tmp_path: Path) -> None:
    folder = tmp_path / "dev" / "bench"
    folder.mkdir(parents=True)
    for name in ("n2", "n10", "n1", ".hidden"):
        (folder / name).write_bytes(b"")
    root = HostRoot(tmp_path)
    assert root.glob("/dev/bench/n*") == ["/dev/bench/n1", "/dev/bench/n10", "/dev/bench/n2"]
    assert root.glob("//dev/bench/.h*") == ["/dev/bench/.hidden"]
    assert root.glob("/dev/none*") == []
    assert root.glob("/**")[0] == "/"
    with pytest.raises(PathEscapesRoot):
        root.glob("/dev/../*")

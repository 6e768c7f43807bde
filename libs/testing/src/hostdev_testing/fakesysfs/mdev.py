"""Mediated-device instances as the mdev core lays them out, shared by builder and fake kernel."""

from __future__ import annotations

import posixpath
import re

from hostdev_testing.fakesysfs.pci import join_group, leave_group, sync_group_node
from hostdev_testing.fakesysfs.tree import Tree

MDEV_DEVICES = "/sys/bus/mdev/devices"
MDEV_DRIVER = "vfio_mdev"
MDEV_DRIVER_DIR = f"/sys/bus/mdev/drivers/{MDEV_DRIVER}"
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def ensure_bus(tree: Tree) -> None:
    """The mdev bus and its vfio_mdev driver, as loading the mdev modules creates them."""
    tree.mkdir(MDEV_DEVICES)
    tree.mkdir(MDEV_DRIVER_DIR)


def type_dir(parent_dir: str, type_id: str) -> str:
    """A type's directory under its parent function."""
    return f"{parent_dir}/mdev_supported_types/{type_id}"


def capacity_key(parent_dir: str, type_id: str) -> str:
    """The state key holding a type's maximum instance count."""
    return f"{posixpath.basename(parent_dir)}/{type_id}"


def available(tree: Tree, parent_dir: str, type_id: str) -> int:
    """Instances that can still be created: the type's maximum minus the existing ones."""
    maximum = tree.load_state().mdev_max[capacity_key(parent_dir, type_id)]
    return maximum - len(tree.listdir(f"{type_dir(parent_dir, type_id)}/devices"))


def refresh_available(tree: Tree, parent_dir: str, type_id: str) -> None:
    """Rewrite available_instances from the current instance count."""
    count = available(tree, parent_dir, type_id)
    tree.rewrite(f"{type_dir(parent_dir, type_id)}/available_instances", f"{count}\n")


def instance_dir(tree: Tree, uuid: str) -> str | None:
    """The real directory of an existing mdev, or None."""
    return tree.resolve(f"{MDEV_DEVICES}/{uuid}")


def create(tree: Tree, parent_dir: str, type_id: str, uuid: str, group: int) -> str:
    """Make an instance with every link the mdev core and vfio_mdev add; returns its directory."""
    inst = f"{parent_dir}/{uuid}"
    tree.mkdir(inst)
    tree.link(f"{inst}/mdev_type", type_dir(parent_dir, type_id))
    tree.link(f"{inst}/subsystem", "/sys/bus/mdev")
    tree.write(f"{inst}/remove", "")
    tree.write(f"{inst}/uevent", f"DRIVER={MDEV_DRIVER}\nMDEV_TYPE={type_id}\n")
    tree.link(f"{type_dir(parent_dir, type_id)}/devices/{uuid}", inst)
    tree.link(f"{MDEV_DEVICES}/{uuid}", inst)
    tree.link(f"{inst}/driver", MDEV_DRIVER_DIR)
    tree.link(f"{MDEV_DRIVER_DIR}/{uuid}", inst)
    # Without a DMA domain of its own, a mediated device's group reports its type as unknown.
    join_group(tree, inst, group, kind="unknown")
    sync_group_node(tree, group)
    refresh_available(tree, parent_dir, type_id)
    return inst


def remove(tree: Tree, inst: str) -> None:
    """Undo `create` completely, giving the slot back to the type."""
    uuid = posixpath.basename(inst)
    type_path = tree.resolve(f"{inst}/mdev_type")
    leave_group(tree, inst)
    tree.remove(f"{MDEV_DRIVER_DIR}/{uuid}")
    tree.remove(f"{MDEV_DEVICES}/{uuid}")
    tree.remove(inst)
    if type_path is not None:
        tree.remove(f"{type_path}/devices/{uuid}")
        parent_dir = posixpath.dirname(posixpath.dirname(type_path))
        refresh_available(tree, parent_dir, posixpath.basename(type_path))

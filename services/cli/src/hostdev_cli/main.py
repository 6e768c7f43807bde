"""The `hostdev` command line: parse, dispatch, and turn errors into one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from hostdev_cli import inventory
from hostdev_cli.errors import BAD_INPUT, FAILED, InputError, OperationFailed
from hostdev_cli.host import check_root, load_selection, open_host
from hostdev_cli.output import Format, dump, dump_all
from hostdev_cli.slicegen import build_slices, driver_name, node_name
from hostdev_events.inventory import Device

# The sub-commands that need NATS, gRPC, the API client or the CEL runtime import them when
# they run: `hostdev inventory` then starts in a fraction of the time.

Handler = Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, int]]


def _fmt(args: argparse.Namespace) -> Format:
    if args.json:
        return "json"
    return "yaml" if args.yaml else "table"


def _root(args: argparse.Namespace) -> Path:
    return Path(args.root or os.environ.get("HOSTDEV_HOST_ROOT") or "/")


async def _inventory(args: argparse.Namespace, out: TextIO) -> int:
    scanned = inventory.scan(open_host(_root(args), args.config))
    fmt = _fmt(args)
    text = inventory.render(scanned) if fmt == "table" else dump(inventory.to_data(scanned), fmt)
    print(text, file=out)
    return 0


async def _slices(args: argparse.Namespace, out: TextIO) -> int:
    scanned = inventory.scan(open_host(_root(args), args.config))
    bodies = build_slices(scanned.devices, node_name(args.node), driver_name(args.driver))
    print(dump(bodies, "json") if args.json else dump_all(bodies), file=out)
    return 0


async def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    from hostdev_cli import simulation

    node = node_name(args.node)
    driver = driver_name(args.driver)
    claims = simulation.read_documents(args.claims)

    def build(devices: list[Device]) -> list[dict[str, Any]]:
        return simulation.named(build_slices(devices, node, driver))

    if args.inventory is not None:
        slices = simulation.slices_from_file(args.inventory, build)
    else:
        slices = build(inventory.scan(open_host(_root(args), args.config)).devices)
    given = claims + (simulation.read_documents(args.classes) if args.classes else [])
    defaults = simulation.merge_classes(simulation.default_classes(), given)
    outcomes = simulation.run(args.claims, given, defaults, slices, node)
    fmt = _fmt(args)
    if fmt == "table":
        print(simulation.render(outcomes), file=out)
    else:
        print(dump(simulation.to_data(outcomes), fmt), file=out)
    return 0 if simulation.satisfied(outcomes) else FAILED


async def _claims(args: argparse.Namespace, out: TextIO) -> int:
    from hostdev_cli import checkpoints
    from hostdev_cli.natsconn import js_domain, nats_url

    node = node_name(args.node)
    records = await checkpoints.read_checkpoints(
        nats_url(args.nats), js_domain(args.js_domain), node
    )
    boot_id = checkpoints.current_boot_id(check_root(_root(args)))
    now = datetime.now(UTC)
    fmt = _fmt(args)
    if fmt == "table":
        print(checkpoints.render(records, boot_id, now), file=out)
    else:
        print(dump(checkpoints.to_data(records, boot_id, now), fmt), file=out)
    return 0


async def _operate(args: argparse.Namespace, out: TextIO, *, unprepare: bool) -> int:
    from hostdev_cli import gateway

    claim = gateway.parse_claim(args.claim)
    if args.uid:
        claim = gateway.ClaimName(claim.namespace, claim.name, args.uid)
    else:
        url = args.kube_api_url or os.environ.get("HOSTDEV_KUBE_API_URL", "")
        claim = await gateway.resolve(claim, url)
    socket = (
        Path(args.socket)
        if args.socket
        else gateway.find_socket(gateway.plugins_dir(args.plugins_dir), driver_name(args.driver))
    )
    result = await gateway.call(socket, claim, unprepare=unprepare)
    fmt = _fmt(args)
    if fmt == "table":
        print(gateway.render(result, unprepare), file=out)
    else:
        print(dump(gateway.to_data(result, unprepare), fmt), file=out)
    return FAILED if result.error else 0


async def _prepare(args: argparse.Namespace, out: TextIO) -> int:
    return await _operate(args, out, unprepare=False)


async def _unprepare(args: argparse.Namespace, out: TextIO) -> int:
    return await _operate(args, out, unprepare=True)


async def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    from hostdev_cli import checkpoints, doctor
    from hostdev_cli.natsconn import connected, js_domain, nats_url, redacted

    root = check_root(_root(args))
    needed = doctor.needs_vfio(load_selection(args.config)[0])
    paths = doctor.Paths.from_env()
    url = nats_url(args.nats)
    node = node_name(args.node)
    records: list[checkpoints.Recorded] | None = None
    error: str | None = None
    unread: str | None = None
    try:
        async with connected(url):
            pass
    except OperationFailed as err:
        error = str(err)
    if error is None:
        try:
            records = await checkpoints.read_checkpoints(url, js_domain(args.js_domain), node)
        except OperationFailed as err:
            unread = str(err)
    checks = [
        doctor.iommu(root, needed),
        doctor.vfio_pci(root, needed),
        doctor.cdi_dirs(root, paths),
        doctor.runtime_cdi(root),
        doctor.nats_check(redacted(url), error),
        doctor.kubelet_dirs(root, paths, driver_name(args.driver)),
        doctor.boot_check(root, records, unread),
    ]
    fmt = _fmt(args)
    if fmt == "table":
        print(doctor.render(checks), file=out)
    else:
        data = [{"check": c.name, "status": str(c.status), "detail": c.detail} for c in checks]
        print(dump(data, fmt), file=out)
    return FAILED if doctor.failed(checks) else 0


def _output_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="JSON instead of a table")
    group.add_argument("--yaml", action="store_true", help="YAML instead of a table")


def _host_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="where the host's / is ($HOSTDEV_HOST_ROOT, default /)")
    parser.add_argument(
        "--config",
        type=Path,
        help="device selection file ($HOSTDEV_DEVICES_CONFIG, default /etc/hostdev/devices.yaml; "
        "without one: everything the driver can offer)",
    )


def _node_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", help="node name ($NODE_NAME, default this host's name)")
    parser.add_argument(
        "--driver", help="driver name ($HOSTDEV_DRIVER_NAME, default hostdev.k8s.io)"
    )


def _nats_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats",
        help="NATS URL with credentials ($HOSTDEV_NATS_URL, default nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--js-domain", help="JetStream domain of the node's leaf ($HOSTDEV_JS_DOMAIN)"
    )


def parser() -> argparse.ArgumentParser:
    """Every sub-command and its flags."""
    top = argparse.ArgumentParser(
        prog="hostdev", description="Look at a host, render its ResourceSlices, operate claims."
    )
    subs = top.add_subparsers(dest="command", required=True)

    sub = subs.add_parser("inventory", help="what this host offers, and why not the rest")
    _host_flags(sub)
    _output_flags(sub)
    sub.set_defaults(handler=_inventory)

    sub = subs.add_parser("slices", help="the ResourceSlices discovery would publish (YAML)")
    _host_flags(sub)
    _node_flags(sub)
    sub.add_argument("--json", action="store_true", help="a JSON list instead of YAML documents")
    sub.set_defaults(handler=_slices, yaml=False)

    sub = subs.add_parser(
        "simulate", help="would these claims be satisfied here, and with which devices?"
    )
    sub.add_argument(
        "--claims",
        type=Path,
        required=True,
        help="YAML: ResourceClaims, ResourceClaimTemplates, Pods (and classes, namespaces, nodes)",
    )
    source = sub.add_mutually_exclusive_group()
    source.add_argument(
        "--inventory",
        type=Path,
        help="`hostdev inventory --json` output or ResourceSlices YAML, instead of scanning a root",
    )
    source.add_argument("--root", help="scan this root ($HOSTDEV_HOST_ROOT, default /)")
    sub.add_argument("--config", type=Path, help="device selection file, with --root")
    sub.add_argument(
        "--classes", type=Path, help="DeviceClasses YAML (default: the driver's own classes)"
    )
    _node_flags(sub)
    _output_flags(sub)
    sub.set_defaults(handler=_simulate)

    sub = subs.add_parser("claims", help="the node's claim checkpoints")
    sub.add_argument("--root", help="for the current boot ID ($HOSTDEV_HOST_ROOT, default /)")
    _node_flags(sub)
    _nats_flags(sub)
    _output_flags(sub)
    sub.set_defaults(handler=_claims)

    for name, handler, verb in (
        ("prepare", _prepare, "NodePrepareResources"),
        ("unprepare", _unprepare, "NodeUnprepareResources"),
    ):
        sub = subs.add_parser(name, help=f"call the gateway's {verb} for one claim, as the kubelet")
        sub.add_argument("claim", metavar="NAMESPACE/NAME")
        sub.add_argument("--uid", help="the claim's UID; skips reading it from the API server")
        sub.add_argument(
            "--kube-api-url",
            help="API server URL ($HOSTDEV_KUBE_API_URL; else in-cluster, kubeconfig)",
        )
        sub.add_argument(
            "--plugins-dir",
            help="kubelet plugin dir ($HOSTDEV_PLUGINS_DIR, default /var/lib/kubelet/plugins)",
        )
        sub.add_argument(
            "--socket", help="the gateway's DRA socket (default <plugins-dir>/<driver>/dra.sock)"
        )
        _node_flags(sub)
        _output_flags(sub)
        sub.set_defaults(handler=handler)

    sub = subs.add_parser("doctor", help="is this node ready for the driver?")
    _host_flags(sub)
    _node_flags(sub)
    _nats_flags(sub)
    _output_flags(sub)
    sub.set_defaults(handler=_doctor)
    return top


async def run_async(
    argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command; bad input is one line on stderr and exit code 2, a failure 1."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed its usage line already
        return BAD_INPUT if exit_.code else 0
    handler: Handler = args.handler
    try:
        return await handler(args, out)
    except InputError as error:
        print(f"hostdev {args.command}: {error}", file=err)
        return BAD_INPUT
    except OperationFailed as error:
        print(f"hostdev {args.command}: {error}", file=err)
        return FAILED


def run(argv: Sequence[str]) -> int:
    """`run_async` outside an event loop."""
    return asyncio.run(run_async(argv))


def main() -> None:
    """The console script."""
    # The families log what they pass over; the command shows those as reasons instead.
    logging.basicConfig(level=logging.WARNING, format="hostdev: %(message)s")
    logging.getLogger("hostdev_families").setLevel(logging.ERROR)
    sys.exit(run(sys.argv[1:]))

"""Benchmark suite (issue #7): prepare latency and throughput, the in-process floor, slice
publication, memory and cold start. Prints one table per section and writes a JSON report.

    .venv/bin/python bench/run.py [--short] [--report PATH]
    .venv/bin/python -m bench.run [--short] [--report PATH]     (from the repository root)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import report, transport
from bench.floor import FloorTarget, fetch_claims, floor_deps
from bench.load import LevelResult, run_level
from bench.prepare import StackResult, compile_services, import_times, run_stack
from bench.slices import SizeResult, measure_size
from bench.stack import (
    DRIVER,
    HOST_PATHS,
    NAMESPACE,
    NODE,
    ApiProcess,
    Work,
    bench_host,
    cache_bytecode,
    create_claims,
    filesystem_type,
    flatten,
    optional_schemas,
    workdir_base,
)
from hostdev_testing.cluster import Cluster
from hostdev_testing.nats import NatsServer
from hostdev_testing.services import NodeConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SLICE_SIZES = (100, 1_000, 10_000)
BIG = 10_000


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much of everything one mode does."""

    warmup_cycles: int  # per caller, 4 callers, not measured
    levels: tuple[tuple[int, int], ...]  # (callers, cycles per caller)
    cold_starts: int
    slice_sizes: tuple[int, ...]
    settle_s: float  # wait after start before reading idle memory
    import_times: bool
    transport_trips: int = 1000  # bare round trips of each transport


FULL = Sizes(
    warmup_cycles=10,
    levels=((1, 1000), (4, 250), (16, 80), (64, 20)),
    cold_starts=3,
    slice_sizes=SLICE_SIZES,
    settle_s=2.0,
    import_times=True,
)
SHORT = Sizes(
    warmup_cycles=2,
    levels=((1, 10), (4, 3), (16, 2), (64, 1)),
    cold_starts=1,
    slice_sizes=(100, 1_000),
    settle_s=0.5,
    import_times=False,
    transport_trips=50,
)


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(slots=True)
class Results:
    sizes: Sizes
    machine: dict[str, Any]
    floor: list[LevelResult]
    stack: StackResult
    slices: list[SizeResult]
    transport: transport.TransportResult | None = None
    claims: int = 0
    claims_s: float = 0.0
    duration_s: float = 0.0
    code: dict[str, Any] = field(default_factory=dict)


async def _claims(
    cluster: Cluster, tag: str, sizes: Sizes
) -> tuple[list[list[Work]], list[list[list[Work]]]]:
    warmup = await create_claims(cluster, f"{tag}-warm", 4, sizes.warmup_cycles)
    levels = [
        await create_claims(cluster, f"{tag}-{callers}", callers, cycles)
        for callers, cycles in sizes.levels
    ]
    return warmup, levels


def _others(nats_server: NatsServer, api: ApiProcess) -> dict[str, int]:
    others = {"api emulator": api.pid, "bench (kubelet side)": os.getpid()}
    if nats_server.proc is not None:
        others["nats-server"] = nats_server.proc.pid
    return others


async def _measure(sizes: Sizes, base: Path) -> Results:
    started = time.perf_counter()
    facts = report.machine(base, filesystem_type(base))
    measured_code = report.code(REPO_ROOT)
    nats_dir = Path(tempfile.mkdtemp(prefix="hdb-nats-", dir="/tmp"))
    nats_server = NatsServer(nats_dir)
    nats_url = nats_server.start()
    api = ApiProcess(base / "api", optional_schemas())
    try:
        api_url = await api.start()
        host = bench_host(base / "root")
        config = NodeConfig(
            node=NODE,
            driver=DRIVER,
            nats_url=nats_url,
            api_url=api_url,
            root=host.root,
            workdir=base / "node",
            devices_config=host.write_config(base / "devices.yaml", HOST_PATHS),
        )
        _progress("creating claims in the API emulator")
        claims_started = time.perf_counter()
        async with Cluster(api_url, NODE, DRIVER) as cluster:
            await cluster.create_node()
            await cluster.create_namespace(NAMESPACE)
            floor_warm, floor_work = await _claims(cluster, "floor", sizes)
            stack_warm, stack_work = await _claims(cluster, "stack", sizes)
            decoded = await fetch_claims(
                cluster, flatten(floor_warm) + [w for lv in floor_work for w in flatten(lv)]
            )
        claims_s = time.perf_counter() - claims_started
        claims = sum(len(flatten(w)) for w in (floor_warm, stack_warm, *floor_work, *stack_work))

        _progress("floor: preparer handlers in this process")
        deps = await floor_deps(host.root, config.devices_config, base / "floor-cdi", decoded)
        target = FloorTarget(deps)
        await run_level(target, floor_warm)
        me = {"bench (kubelet side)": os.getpid()}
        floor = [await run_level(target, work, me) for work in floor_work]

        _progress("transports alone: NATS, JetStream KV and gRPC round trips")
        bare = await transport.measure(nats_url, base / "transport", sizes.transport_trips)

        _progress("compiling the services' bytecode")
        await compile_services()
        imports = {}
        if sizes.import_times:
            _progress("import time of each service")
            imports = await import_times()
        _progress("full stack: cold start, then prepare/unprepare through the gateway")
        stack = await run_stack(
            config,
            stack_warm,
            stack_work,
            cold_starts=sizes.cold_starts,
            settle_s=sizes.settle_s,
            other_pids=_others(nats_server, api),
        )
        stack.import_s = imports

        slices = []
        metered = {k: v for k, v in _others(nats_server, api).items() if "bench" not in k}
        for count in sizes.slice_sizes:
            _progress(f"slices: {count:,} devices")
            slices.append(await measure_size(nats_url, api_url, base, count, metered))
        if BIG in sizes.slice_sizes and api.schemas is not None:
            # The target is the driver's work: the same publish against an emulator that
            # does not check objects against the OpenAPI schemas (still parses and stores).
            _progress(f"slices: {BIG:,} devices, emulator not validating schemas")
            plain = ApiProcess(base / "api-noschema", None)
            try:
                plain_url = await plain.start()
                metered = {**metered, "api emulator": plain.pid}
                slices.append(
                    await measure_size(nats_url, plain_url, base, BIG, metered, validating=False)
                )
            finally:
                await plain.stop()
    finally:
        await api.stop()
        nats_server.stop()
        shutil.rmtree(nats_dir, ignore_errors=True)
    return Results(
        sizes,
        facts,
        floor,
        stack,
        slices,
        bare,
        claims,
        claims_s,
        time.perf_counter() - started,
        code=measured_code,
    )


def _json(results: Results, found: list[report.Target], short: bool) -> dict[str, Any]:
    stack = results.stack
    skipped = [n for n in SLICE_SIZES if n not in results.sizes.slice_sizes]
    return {
        "mode": "short" if short else "full",
        "duration_s": round(results.duration_s, 2),
        "machine": results.machine,
        "code": results.code,
        "settings": asdict(results.sizes),
        "setup": {"claims_created": results.claims, "claims_s": round(results.claims_s, 2)},
        "prepare": {
            "warmup": stack.warmup.as_json() if stack.warmup else None,
            "levels": [lv.as_json() for lv in stack.levels],
        },
        "floor": {
            "levels": [lv.as_json() for lv in results.floor],
            "ratio_p50": _round(report.floor_ratio(stack.levels, results.floor)),
        },
        "transport": transport.as_json(results.transport) if results.transport else None,
        "slices": {
            "sizes": [s.as_json() for s in results.slices],
            "skipped": [{"devices": n, "reason": "short mode"} for n in skipped],
        },
        "memory": stack.memory_json(),
        "cold_start": stack.cold_start_json(),
        "targets": [t.as_json() for t in found],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _print(results: Results, found: list[report.Target]) -> None:
    stack = results.stack
    skipped = [n for n in SLICE_SIZES if n not in results.sizes.slice_sizes]
    ratio = report.floor_ratio(stack.levels, results.floor)
    floor_text = report.level_table(
        "Floor: the same handlers in one process, no NATS/gRPC/HTTP (ms)", results.floor
    )
    if ratio is not None:
        floor_text += f"\nfull-stack prepare p50 / floor prepare p50 (sequential): {ratio:.2f}x"
    sections = [
        report.level_table(
            "Full stack: one-device claims through the gateway, five processes on NATS (ms)",
            stack.levels,
        ),
        floor_text,
        *([transport.table(results.transport, _seq_p50(stack))] if results.transport else []),
        report.cpu_table(stack.levels, results.floor),
        report.slices_table(results.slices, skipped),
        report.memory_table(stack),
        report.cold_start_table(stack),
        report.targets_table(found),
    ]
    m = results.machine
    print(
        f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}, {m['date']}, "
        f"work dir on {m['workdir_fs']}, load {' '.join(m['loadavg_at_start'])}"
    )
    head, changed = results.code.get("head"), results.code.get("changed", [])
    if head:
        print(
            f"code: {head[:12]}"
            + (f" + {len(changed)} changed file(s) in libs/ services/" if changed else "")
        )
    print()
    print("\n\n".join(sections))
    print(f"\ntook {results.duration_s:.1f} s")


def _seq_p50(stack: StackResult) -> float | None:
    one = [lv for lv in stack.levels if lv.callers == 1]
    return one[0].prepare.p50 if one else None


def _failures(results: Results) -> list[str]:
    problems = []
    for name, levels in (("full stack", results.stack.levels), ("floor", results.floor)):
        for lv in levels:
            if lv.errors:
                problems.append(
                    f"{name}, {lv.callers} callers: {lv.errors} errors {lv.error_samples}"
                )
    for size in results.slices:
        if size.published_devices != size.devices:
            problems.append(f"slices: {size.published_devices} of {size.devices} devices published")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--short", action="store_true", help="a quick run that only checks it works"
    )
    parser.add_argument(
        "--report", type=Path, default=REPO_ROOT / "bench-report.json", help="JSON report path"
    )
    args = parser.parse_args(argv)
    sizes = SHORT if args.short else FULL
    base = Path(tempfile.mkdtemp(prefix="hdb", dir=workdir_base()))
    cache_bytecode(base / "pycache")
    try:
        results = asyncio.run(_measure(sizes, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    found = report.targets(results.stack, results.floor, results.slices)
    _print(results, found)
    args.report.write_text(json.dumps(_json(results, found, args.short), indent=2) + "\n")
    print(f"report written to {args.report}")
    problems = _failures(results)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

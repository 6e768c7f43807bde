"""The full stack: five service processes on nats-server, driven through the kubelet's DRA socket."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.cpu import until_quiet
from bench.load import LevelResult, run_level
from bench.memory import PeakSampler, hwm_mib, rss_mib
from bench.stack import DRIVER, Work
from hostdev_testing.kubelet import KubeletSimulator, PluginCallError, RegisteredPlugin
from hostdev_testing.services import MODULES, NodeConfig, Services, running_services

START_TIMEOUT = 60.0


class StackTarget:
    """The kubelet simulator's DRA calls, one claim per call, all on one gRPC channel."""

    def __init__(self, plugin: RegisteredPlugin) -> None:
        self.plugin = plugin

    async def prepare(self, work: Work) -> str:
        try:
            outcome = await self.plugin.prepare([work.claim])
        except PluginCallError as err:
            return str(err)
        found = outcome.claims.get(work.claim.uid)
        return "no result for the claim" if found is None else found.error

    async def unprepare(self, work: Work) -> str:
        try:
            outcome = await self.plugin.unprepare([work.claim])
        except PluginCallError as err:
            return str(err)
        found = outcome.claims.get(work.claim.uid)
        return "no result for the claim" if found is None else found.error


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Seconds from spawning the five processes to the driver registered / all five ready."""

    registered_s: float
    all_ready_s: float


@dataclass(slots=True)
class StackResult:
    cold_starts: list[ColdStart] = field(default_factory=list)
    import_s: dict[str, float] = field(default_factory=dict)
    idle_mib: dict[str, float] = field(default_factory=dict)
    after_load_mib: dict[str, float] = field(default_factory=dict)
    peak_mib: dict[str, float] = field(default_factory=dict)
    hwm_mib: dict[str, float] = field(default_factory=dict)
    warmup: LevelResult | None = None
    levels: list[LevelResult] = field(default_factory=list)

    @property
    def registered_median_s(self) -> float:
        return statistics.median(c.registered_s for c in self.cold_starts)

    def memory_json(self) -> dict[str, Any]:
        return {
            name: {
                "idle_mib": round(self.idle_mib.get(name, 0.0), 2),
                "after_load_mib": round(self.after_load_mib.get(name, 0.0), 2),
                "peak_sampled_mib": round(self.peak_mib.get(name, 0.0), 2),
                "hwm_mib": round(self.hwm_mib.get(name, 0.0), 2),
            }
            for name in MODULES
        }

    def cold_start_json(self) -> dict[str, Any]:
        return {
            "runs": [
                {"registered_s": round(c.registered_s, 4), "all_ready_s": round(c.all_ready_s, 4)}
                for c in self.cold_starts
            ],
            "registered_s_median": round(self.registered_median_s, 4),
            "import_s": {k: round(v, 4) for k, v in self.import_s.items()},
        }


async def compile_services() -> None:
    """Import every service's modules once, unmeasured, to fill the bytecode cache (see
    stack.cache_bytecode); what a service imports only once running is compiled by the
    first cold start, and the target takes the median of three."""
    modules = [f"{m}.__main__, {m}.app" for m in MODULES.values()]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import {', '.join(modules)}, hostdev_testing.fake_preparer"
    )
    if await proc.wait() != 0:
        raise RuntimeError("importing the services failed")


async def import_times() -> dict[str, float]:
    """Interpreter start plus importing each service's app module, one at a time, alone."""
    found = {}
    for name, module in MODULES.items():
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import {module}.app, {module}.__main__"
        )
        await proc.wait()
        found[name] = time.perf_counter() - started
    return found


async def _cold_start(services: Services, config: NodeConfig) -> tuple[KubeletSimulator, ColdStart]:
    kubelet = KubeletSimulator(config.registry_dir)
    started = time.perf_counter()
    start = asyncio.create_task(services.start(processes=True, timeout=START_TIMEOUT))
    try:
        await kubelet.wait_for_driver(DRIVER, timeout=START_TIMEOUT)
        registered = time.perf_counter() - started
        await start
    except BaseException:
        start.cancel()
        await kubelet.close()
        raise
    return kubelet, ColdStart(registered, time.perf_counter() - started)


def _pids(services: Services) -> dict[str, int]:
    pids = {}
    for name, running in services.running.items():
        assert running.proc is not None, "the services run as processes"
        pids[name] = running.proc.pid
    return pids


def _read(pids: dict[str, int], read: Any) -> dict[str, float]:
    return {name: value for name, pid in pids.items() if (value := read(pid)) is not None}


async def run_stack(
    config: NodeConfig,
    warmup: Sequence[Sequence[Work]],
    levels: Sequence[Sequence[Sequence[Work]]],
    *,
    cold_starts: int,
    settle_s: float,
    other_pids: Mapping[str, int],
) -> StackResult:
    """Cold-start the services (`cold_starts` times), then warm up and run every level.

    `other_pids` (nats-server, the API emulator, this process) are metered with the services.
    """
    result = StackResult()
    config.registry_dir.mkdir(parents=True, exist_ok=True)
    async with running_services(config) as services:
        kubelet: KubeletSimulator | None = None
        try:
            for _ in range(cold_starts):
                if kubelet is not None:
                    await kubelet.close()
                    await services.stop_all()
                kubelet, cold = await _cold_start(services, config)
                result.cold_starts.append(cold)
            assert kubelet is not None
            plugin = kubelet.registered(DRIVER)
            assert plugin is not None
            pids = _pids(services)
            await asyncio.sleep(settle_s)
            # The claim watch lists every claim at start (thousands here, created before):
            # wait for the API emulator and the services to be done with it.
            await until_quiet({**pids, **{k: v for k, v in other_pids.items() if "api" in k}})
            result.idle_mib = _read(pids, rss_mib)
            target = StackTarget(plugin)
            result.warmup = await run_level(target, warmup)
            sampler = PeakSampler(pids)
            async with sampler.running():
                for work in levels:
                    result.levels.append(await run_level(target, work, {**pids, **other_pids}))
            result.after_load_mib = _read(pids, rss_mib)
            result.peak_mib = dict(sampler.peaks)
            result.hwm_mib = _read(pids, hwm_mib)
        finally:
            if kubelet is not None:
                await kubelet.close()
    return result

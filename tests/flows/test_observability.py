"""Traces across services, metrics after a prepare, and tracing that costs nothing when off."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.otlp import OtlpReceiver, ReceivedSpan
from hostdev_testing.services import MODULES, NodeConfig, Services


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    """An OTLP/gRPC trace receiver on loopback."""
    otlp = OtlpReceiver()
    endpoint = await otlp.start()
    try:
        yield otlp, endpoint
    finally:
        await otlp.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _claim_trace(spans: list[ReceivedSpan], uid: str) -> list[ReceivedSpan]:
    roots = [s for s in spans if uid in str(s.attributes.get("dra.claim.uid", ""))]
    traces = {s.trace_id for s in roots}
    return [s for s in spans if s.trace_id in traces]


async def test_one_prepare_is_one_trace_across_four_services(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    receiver: tuple[OtlpReceiver, str],
) -> None:
    """Preparing a claim exports one trace with gateway, preparer, allocator and CDI writer
    spans, each parented inside the trace, carrying the claim UID and the device name."""
    otlp, endpoint = receiver
    services.extra_env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    await services.start(processes=True, timeout=60)  # five processes with the SDK, on a busy CI
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=15)
    claim = await cluster.allocated_claim("default", "traced", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    wanted = {"gateway", "preparer", "allocator", "cdi-writer"}

    def complete(all_spans: list[ReceivedSpan]) -> bool:
        # Batches from four processes arrive in any order: wait until the tree is whole.
        trace = _claim_trace(all_spans, claim.uid)
        ids = {s.span_id for s in trace}
        return wanted <= {s.service for s in trace} and all(
            not s.parent_id or s.parent_id in ids for s in trace
        )

    async with asyncio.timeout(15):
        spans = await otlp.wait_for(complete)
    trace = _claim_trace(spans, claim.uid)
    assert len({s.trace_id for s in trace}) == 1
    (root,) = [s for s in trace if not s.parent_id]
    assert (root.service, root.name) == ("gateway", "NodePrepareResources")
    prepare = next(s for s in trace if s.name == "prepare claim")
    assert prepare.attributes["dra.claim.uid"] == claim.uid
    assert prepare.attributes["dra.device.names"] == ["kvm"]
    assert {"reserve devices", "write CDI spec"} <= {s.name for s in trace}
    consumers = {s.service for s in trace if s.name.startswith("process ")}
    assert {"preparer", "allocator", "cdi-writer"} <= consumers


async def test_a_claims_prepare_and_unprepare_are_one_trace_linked_to_its_publish(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    receiver: tuple[OtlpReceiver, str],
) -> None:
    """The kubelet's two calls for one claim end up in one trace: the unprepare's work is a
    child of the prepare's span (stored in the checkpoint), with spans of the gateway,
    preparer, allocator and CDI writer for both halves; the prepare links to the discovery
    pass that published the device, the unprepare to the kubelet call that asked for it."""
    otlp, endpoint = receiver
    services.extra_env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    await services.start(processes=True, timeout=60)  # five processes with the SDK, on a busy CI
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=15)
    claim = await cluster.allocated_claim("default", "lifelong", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    assert (await plugin.unprepare([claim])).claims[claim.uid].error == ""
    halves = {
        ("gateway", "NodePrepareResources"),
        ("preparer", "prepare claim"),
        ("allocator", "process ReserveDevices"),
        ("cdi-writer", "process WriteCdiSpecs"),
        ("preparer", "unprepare claim"),
        ("allocator", "process ReleaseDevices"),
        ("cdi-writer", "process RemoveCdiSpecs"),
    }

    def claim_life(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        prepare = [s for s in spans if s.name == "prepare claim"]
        prepare = [s for s in prepare if s.attributes.get("dra.claim.uid") == claim.uid]
        return [s for s in spans if prepare and s.trace_id == prepare[0].trace_id]

    def complete(spans: list[ReceivedSpan]) -> bool:
        # Five processes export in any order: wait for both halves, and for every linked
        # span with the root of its trace.
        life = claim_life(spans)
        links = {link[1] for s in life for link in s.links}
        linked_traces = {s.trace_id for s in spans if s.span_id in links}
        roots = {s.trace_id for s in spans if not s.parent_id}
        return (
            halves <= {(s.service, s.name) for s in life}
            and bool(links)
            and links <= {s.span_id for s in spans}
            and linked_traces <= roots
        )

    async with asyncio.timeout(15):
        spans = await otlp.wait_for(complete)
    life = claim_life(spans)
    by_id = {s.span_id: s for s in spans}
    prepare = next(s for s in life if s.name == "prepare claim")
    unprepare = next(s for s in life if s.name == "unprepare claim")
    assert unprepare.parent_id == prepare.span_id
    assert unprepare.attributes["dra.claim.uid"] == claim.uid
    (root,) = [s for s in life if not s.parent_id]
    assert (root.service, root.name) == ("gateway", "NodePrepareResources")
    published = [by_id[span_id] for _, span_id in prepare.links]
    assert [(s.service, s.name) for s in published] == [("discovery", "discover devices")]
    assert "publish resource slices" in {
        s.name for s in spans if s.trace_id == published[0].trace_id
    }
    (asked,) = [by_id[span_id] for _, span_id in unprepare.links]
    asked_trace = [s for s in spans if s.trace_id == asked.trace_id]
    assert ("gateway", "NodeUnprepareResources") in {(s.service, s.name) for s in asked_trace}
    assert asked.trace_id != prepare.trace_id


async def test_metrics_endpoints_show_histograms_after_a_prepare(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Every service's /metrics has the message histogram; the preparer's has prepare latency
    by family; /healthz and /readyz answer."""
    ports = {name: _free_port() for name in MODULES}
    for name, port in ports.items():
        services.per_service_env[name] = {"HOSTDEV_HTTP_PORT": str(port)}
    await services.start(processes=True)
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=15)
    claim = await cluster.allocated_claim("default", "measured", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    async with aiohttp.ClientSession() as http:
        for name, port in ports.items():
            base = f"http://127.0.0.1:{port}"
            async with http.get(f"{base}/readyz") as ready, http.get(f"{base}/healthz") as alive:
                assert (ready.status, alive.status) == (200, 200)
            async with http.get(f"{base}/metrics") as response:
                text = await response.text()
            assert "hostdev_nats_reconnects_total" in text
            if name in ("preparer", "allocator", "cdi-writer"):
                assert "hostdev_message_handle_seconds_bucket" in text
        async with http.get(f"http://127.0.0.1:{ports['preparer']}/metrics") as response:
            text = await response.text()
    assert 'hostdev_prepare_seconds_count{family="hostpath"} 1.0' in text
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{ports['allocator']}/metrics") as response,
    ):
        assert "hostdev_devices_held 1.0" in await response.text()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{ports['discovery']}/metrics") as response,
    ):
        assert 'hostdev_devices{family="hostpath",health="healthy"} 6.0' in await response.text()


def test_tracing_off_loads_no_sdk_on_the_prepare_path(nats_url: str) -> None:
    """Without OTEL_* variables a whole prepare runs with the API's no-op tracer: the SDK, its
    exporter and span processors are never even imported."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys, tempfile
        from pathlib import Path
        for name in [n for n in os.environ if n.startswith("OTEL_")]:
            del os.environ[name]
        from opentelemetry import trace
        from hostdev_testing.apiserver import ApiServer
        from hostdev_testing.cluster import Allocated, Cluster
        from hostdev_testing.fakehost import DEMO_HOST_PATHS, demo_host
        from hostdev_testing.kubelet import KubeletSimulator
        from hostdev_testing.services import NodeConfig, running_services
        from hostdev_runtime.telemetry import setup_tracing

        async def main():
            work = Path(tempfile.mkdtemp(prefix="hd", dir="/tmp"))
            assert setup_tracing("preparer", os.environ) is False
            async with ApiServer() as api:
                host = demo_host(work / "root")
                config = NodeConfig(node="quiet-node", driver="hostdev.k8s.io", nats_url=sys.argv[1],
                    api_url=api, root=host.root, workdir=work / "w",
                    devices_config=host.write_config(work / "d.yaml", DEMO_HOST_PATHS))
                async with Cluster(api, config.node, config.driver) as cluster, running_services(config) as svc:
                    await cluster.create_node()
                    await svc.start()
                    kubelet = KubeletSimulator(config.registry_dir)
                    plugin = await kubelet.wait_for_driver(config.driver, timeout=10)
                    claim = await cluster.allocated_claim("default", "c", [Allocated("kvm", "kvm")])
                    assert (await plugin.prepare([claim])).kubelet_failure is None
                    await kubelet.close()
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
            print("provider", type(trace.get_tracer_provider()).__name__)
            print("sdk", loaded)

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, nats_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "provider ProxyTracerProvider" in out
    assert "sdk []" in out

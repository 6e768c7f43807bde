"""Fixtures for every test: a session nats-server, the API emulator, a fake node and its services."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.cluster import Cluster
from hostdev_testing.fakehost import DEMO_HOST_PATHS, FakeHost, demo_host
from hostdev_testing.fakesysfs import SampleHost, acceptance_host
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.nats import NatsServer
from hostdev_testing.schemas import schemas_dir
from hostdev_testing.services import NodeConfig, Services, running_services

DRIVER = "hostdev.k8s.io"


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream nats-server on 127.0.0.1, free port, shared by the whole run."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest_asyncio.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A client connection to the session's nats-server, closed after the test."""
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def node_name() -> str:
    """A fresh node name per test (its own subjects and keys); the dot exercises token encoding."""
    return f"node-{uuid.uuid4().hex[:10]}.test"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short temporary directory: unix socket paths must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hd", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture
async def api_url() -> AsyncIterator[str]:
    """The Kubernetes API emulator over real HTTP, checking objects against the official schemas."""
    async with ApiServer(schemas_dir=schemas_dir()) as url:
        yield url


@pytest.fixture
def fake_host(short_dir: Path) -> FakeHost:
    """The demo host tree: kvm, a render node, vhost-net, tun, udmabuf, X11 directory."""
    return demo_host(short_dir / "root")


@pytest.fixture
def sample(short_dir: Path) -> SampleHost:
    """The acceptance host: NVMe sharing its IOMMU group, an SR-IOV PF with 4 VFs, an iGPU with
    two mdev types, identical USB sticks. Tests using it override `fake_host` with its root."""
    return acceptance_host(short_dir / "root")


@pytest.fixture
def node_config(
    node_name: str, nats_url: str, api_url: str, fake_host: FakeHost, short_dir: Path
) -> NodeConfig:
    """Settings of the simulated node's services."""
    config = fake_host.write_config(short_dir / "devices.yaml", DEMO_HOST_PATHS)
    return NodeConfig(
        node=node_name,
        driver=DRIVER,
        nats_url=nats_url,
        api_url=api_url,
        root=fake_host.root,
        workdir=short_dir / "work",
        devices_config=config,
    )


@pytest_asyncio.fixture
async def cluster(node_config: NodeConfig) -> AsyncIterator[Cluster]:
    """The control plane's side: the Node exists; claims are allocated by the test."""
    async with Cluster(node_config.api_url, node_config.node, node_config.driver) as cluster:
        await cluster.create_node()
        yield cluster


@pytest_asyncio.fixture
async def services(node_config: NodeConfig, cluster: Cluster) -> AsyncIterator[Services]:
    """A handle that starts the node's services; all are stopped after the test."""
    async with running_services(node_config) as handle:
        yield handle


@pytest_asyncio.fixture
async def dp_kubelet(node_config: NodeConfig) -> AsyncIterator[DevicePluginKubelet]:
    """The kubelet's device manager: kubelet.sock, and the pod-resources API."""
    simulator = DevicePluginKubelet(node_config.device_plugins_dir)
    await simulator.start()
    node_config.pod_resources_socket.parent.mkdir(parents=True, exist_ok=True)
    await simulator.serve_pod_resources(node_config.pod_resources_socket)
    try:
        yield simulator
    finally:
        await simulator.close()


@pytest_asyncio.fixture
async def kubelet(node_config: NodeConfig) -> AsyncIterator[KubeletSimulator]:
    """A kubelet watching the node's plugin registration directory."""
    node_config.registry_dir.mkdir(parents=True, exist_ok=True)
    simulator = KubeletSimulator(node_config.registry_dir)
    try:
        yield simulator
    finally:
        await simulator.close()

"""Whether a watched claim is still allocated here, and how watch events change the view."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hostdev_kube import ClaimList, ResourceClaim, WatchEvent
from hostdev_preparer.claimwatch import ClaimCache, allocated_here

DRIVER = "hostdev.k8s.io"
NODE = "n1"


def _claim(uid: str, allocation: dict[str, Any] | None, name: str = "c") -> dict[str, Any]:
    status = {"allocation": allocation} if allocation is not None else {}
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "7"},
        "status": status,
    }


def _allocation(driver: str = DRIVER, pool: str = NODE, **extra: Any) -> dict[str, Any]:
    result = {"request": "r", "driver": driver, "pool": pool, "device": "kvm"}
    return {"devices": {"results": [result]}, **extra}


def _by_name(operator: str, *names: str) -> dict[str, Any]:
    fields = [{"key": "metadata.name", "operator": operator, "values": list(names)}]
    return {"nodeSelector": {"nodeSelectorTerms": [{"matchFields": fields}]}}


@pytest.mark.parametrize(
    ("allocation", "here"),
    [
        (_allocation(), True),
        (_allocation(**_by_name("In", NODE)), True),
        (_allocation(**_by_name("In", "n2")), False),
        (_allocation(**_by_name("NotIn", NODE)), False),
        (_allocation(driver="other.example.com"), False),
        (_allocation(pool="n2"), False),
        (None, False),
    ],
    ids=[
        "no-selector",
        "selects-us",
        "selects-another",
        "excludes-us",
        "other-driver",
        "other-pool",
        "none",
    ],
)
def test_a_claim_is_ours_only_while_allocated_with_our_devices_on_this_node(
    allocation: dict[str, Any] | None, here: bool
) -> None:
    claim = msgspec.convert(_claim("u1", allocation), ResourceClaim)
    assert allocated_here(claim, DRIVER, NODE) is here


def test_a_label_requirement_is_never_read_as_another_node() -> None:
    """Only the node's name is known here: a term on labels is taken as met."""
    labels = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]}
    selector: dict[str, Any] = {"nodeSelector": {"nodeSelectorTerms": [labels]}}
    claim = msgspec.convert(_claim("u1", _allocation(**selector)), ResourceClaim)
    assert allocated_here(claim, DRIVER, NODE)


def test_watch_events_track_claims_by_uid_and_keep_the_resource_version() -> None:
    """ADDED and MODIFIED replace by UID, DELETED removes, a bookmark only moves the version;
    a claim re-created under its name is another entry."""
    cache = ClaimCache(driver=DRIVER, node=NODE)
    listed = msgspec.convert(
        {"metadata": {"resourceVersion": "5"}, "items": [_claim("u1", _allocation())]}, ClaimList
    )
    cache.replace(listed)
    assert cache.synced
    assert cache.resource_version == "5"
    cache.apply(WatchEvent(type="DELETED", object=_claim("u1", _allocation())))
    cache.apply(WatchEvent(type="ADDED", object=_claim("u2", None)))
    bookmark = {"kind": "ResourceClaim", "metadata": {"resourceVersion": "9"}}
    cache.apply(WatchEvent(type="BOOKMARK", object=bookmark))
    assert set(cache.by_uid) == {"u2"}
    assert not cache.by_uid["u2"].allocated_here
    assert cache.named("ns", "c") == cache.by_uid["u2"]
    assert cache.resource_version == "9"


def _event(kind: str, claim: dict[str, Any]) -> WatchEvent:
    return WatchEvent(type=kind, object=claim)


def test_a_claim_allocated_here_is_served_whole_under_its_uid_and_name() -> None:
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", _allocation())))
    found = cache.fresh("ns", "c", "u1")
    assert found is not None
    assert found.metadata.uid == "u1"
    assert found.status.allocation is not None
    assert found.status.allocation.devices.results[0].device == "kvm"


def test_a_claim_with_opaque_parameters_is_watched_and_served_with_them_intact() -> None:
    """Opaque driver configs are raw JSON in the model; a watch event must still decode."""
    parameters = {"apiVersion": "hostdev.k8s.io/v1alpha1", "kind": "Config", "vlan": 100}
    config = [
        {
            "source": "FromClaim",
            "requests": ["r"],
            "opaque": {"driver": DRIVER, "parameters": parameters},
        }
    ]
    allocation = _allocation()
    allocation["devices"]["config"] = config
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", allocation)))
    found = cache.fresh("ns", "c", "u1")
    assert found is not None
    assert found.status.allocation is not None
    opaque = found.status.allocation.devices.config[0].opaque
    assert opaque is not None
    assert msgspec.json.decode(opaque.parameters) == parameters


@pytest.mark.parametrize(
    ("namespace", "name", "uid"),
    [("ns", "c", "u2"), ("ns", "other", "u1"), ("other", "c", "u1")],
    ids=["another-uid", "another-name", "another-namespace"],
)
def test_a_claim_asked_for_under_another_uid_or_name_is_a_miss(
    namespace: str, name: str, uid: str
) -> None:
    """The kubelet's request names the claim and its UID: both must match what was watched."""
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", _allocation())))
    assert cache.fresh(namespace, name, uid) is None


def test_a_claim_not_allocated_here_yet_is_a_miss_until_the_watch_shows_the_allocation() -> None:
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", None)))
    assert cache.fresh("ns", "c", "u1") is None
    cache.apply(_event("MODIFIED", _claim("u1", _allocation(pool="n2"))))
    assert cache.fresh("ns", "c", "u1") is None
    cache.apply(_event("MODIFIED", _claim("u1", _allocation())))
    assert cache.fresh("ns", "c", "u1") is not None
    cache.apply(_event("MODIFIED", _claim("u1", None)))  # deallocated
    assert cache.fresh("ns", "c", "u1") is None


def test_a_deleted_or_recreated_claim_is_never_served_as_the_old_one() -> None:
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", _allocation())))
    cache.apply(_event("DELETED", _claim("u1", _allocation())))
    assert cache.fresh("ns", "c", "u1") is None
    cache.apply(_event("ADDED", _claim("u2", _allocation())))
    assert cache.fresh("ns", "c", "u1") is None
    assert cache.fresh("ns", "c", "u2") is not None


def test_a_claim_once_unprepared_is_read_from_the_api_whatever_the_watch_says_after() -> None:
    """The watch may still deliver the old allocation after an unprepare: only a GET tells
    whether the claim was allocated anew. A relist keeps that, a deletion ends it."""
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", _allocation())))
    cache.unprepared("u1")
    assert cache.fresh("ns", "c", "u1") is None
    cache.apply(_event("MODIFIED", _claim("u1", _allocation())))
    assert cache.fresh("ns", "c", "u1") is None
    listed = msgspec.convert(
        {"metadata": {"resourceVersion": "8"}, "items": [_claim("u1", _allocation())]}, ClaimList
    )
    cache.replace(listed)
    assert cache.fresh("ns", "c", "u1") is None
    cache.apply(_event("DELETED", _claim("u1", _allocation())))
    assert cache.spent == set()


def test_a_relist_drops_claims_it_no_longer_has() -> None:
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", _allocation())))
    cache.replace(msgspec.convert({"metadata": {"resourceVersion": "9"}, "items": []}, ClaimList))
    assert cache.fresh("ns", "c", "u1") is None
    assert cache.waiting == 0


def test_a_claim_waiting_to_be_prepared_is_kept_with_only_what_a_prepare_reads() -> None:
    claim = _claim("u1", None)
    claim["metadata"] |= {
        "labels": {"app": "vm"},
        "annotations": {"resource.kubernetes.io/pod-claim-name": "gpu", "note": "x" * 1000},
        "generation": 3,
    }
    theirs = {"request": "r", "driver": "other.example.com", "pool": NODE, "device": "nic"}
    allocation = _allocation(**_by_name("In", NODE))
    allocation["devices"]["results"].append(theirs)
    claim["status"] = {"allocation": allocation}
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", claim))
    kept = cache.fresh("ns", "c", "u1")
    assert kept is not None
    assert kept.metadata.labels == {}
    assert kept.metadata.annotations == {"resource.kubernetes.io/pod-claim-name": "gpu"}
    assert kept.metadata.generation == 3
    assert kept.status.allocation is not None
    assert [r.driver for r in kept.status.allocation.devices.results] == [DRIVER]
    assert kept.status.allocation.node_selector is None


def test_a_prepared_claim_is_no_longer_kept_until_the_watch_shows_it_again() -> None:
    """Its record answers every prepare after the first; a change the watch shows keeps it
    again, as any claim allocated here."""
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.apply(_event("ADDED", _claim("u1", _allocation())))
    cache.prepared("u1")
    assert cache.fresh("ns", "c", "u1") is None
    assert cache.by_uid["u1"].allocated_here
    cache.apply(_event("MODIFIED", _claim("u1", _allocation())))
    assert cache.fresh("ns", "c", "u1") is not None


def _page(version: str, *claims: dict[str, Any], more: str = "") -> ClaimList:
    """A page as the client decodes it: from JSON (opaque parameters stay raw JSON)."""
    body = {"metadata": {"resourceVersion": version, "continue": more}, "items": list(claims)}
    return msgspec.json.decode(msgspec.json.encode(body), type=ClaimList)


def test_a_list_read_page_by_page_replaces_the_cache_only_once_its_last_page_is_in() -> None:
    """While the pages come in, the cache answers as before; then it holds exactly what the
    pages held, at the first page's version."""
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.replace(_page("3", _claim("old", _allocation(), name="gone")))
    listing = cache.listing()
    listing.add(_page("5", _claim("u1", _allocation(), name="a"), more="token"))
    assert cache.fresh("ns", "gone", "old") is not None
    assert cache.resource_version == "3"
    listing.add(_page("6", _claim("u2", None, name="b")))
    cache.replace(listing)
    assert set(cache.by_uid) == {"u1", "u2"}
    assert cache.fresh("ns", "a", "u1") is not None
    assert cache.fresh("ns", "gone", "old") is None
    assert cache.resource_version == "5"
    assert cache.waiting == 1


def test_a_list_cut_short_leaves_the_cache_as_it_was() -> None:
    """A listing never given to the cache (a 410 between pages) changes nothing."""
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.replace(_page("3", _claim("u1", _allocation())))
    listing = cache.listing()
    listing.add(_page("5", _claim("u2", _allocation(), name="d"), more="token"))
    assert set(cache.by_uid) == {"u1"}
    assert cache.fresh("ns", "d", "u2") is None
    assert cache.fresh("ns", "c", "u1") is not None


def test_a_kept_claim_is_served_as_it_was_read_but_for_what_a_prepare_does_not_read() -> None:
    """What is kept compactly gives back the claim as decoded, less labels, other
    annotations, the node selector, other drivers' results and the resourceVersion."""
    parameters = {"apiVersion": "hostdev.k8s.io/v1alpha1", "kind": "Config", "vlan": 7}
    claim = _claim("u1", None)
    claim["metadata"] |= {
        "generation": 4,
        "annotations": {"resource.kubernetes.io/pod-claim-name": "nic", "x": "y"},
        "labels": {"app": "vm"},
    }
    result = {
        "request": "r",
        "driver": DRIVER,
        "pool": NODE,
        "device": "vf-1",
        "adminAccess": True,
        "shareID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "consumedCapacity": {"bandwidth": "10Gi"},
    }
    theirs = {"request": "r", "driver": "other.example.com", "pool": NODE, "device": "x"}
    config = {
        "source": "FromClass",
        "requests": ["r"],
        "opaque": {"driver": DRIVER, "parameters": parameters},
    }
    claim["status"] = {
        "allocation": {
            "devices": {"results": [result, theirs], "config": [config]},
            **_by_name("In", NODE),
        }
    }
    cache = ClaimCache(driver=DRIVER, node=NODE)
    cache.replace(_page("9", claim))
    read = msgspec.json.decode(msgspec.json.encode(claim), type=ResourceClaim)
    assert read.status.allocation is not None
    expected = msgspec.structs.replace(
        read,
        metadata=msgspec.structs.replace(
            read.metadata,
            resource_version="",
            labels={},
            annotations={"resource.kubernetes.io/pod-claim-name": "nic"},
        ),
        status=msgspec.structs.replace(
            read.status,
            allocation=msgspec.structs.replace(
                read.status.allocation,
                node_selector=None,
                devices=msgspec.structs.replace(
                    read.status.allocation.devices,
                    results=read.status.allocation.devices.results[:1],
                ),
            ),
        ),
    )
    assert cache.fresh("ns", "c", "u1") == expected

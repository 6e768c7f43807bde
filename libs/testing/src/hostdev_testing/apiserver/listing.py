"""List and watch query parameters and paginated lists."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from hostdev_testing.apiserver import errors
from hostdev_testing.apiserver.errors import bad_request
from hostdev_testing.apiserver.registry import Registry, WriteOptions
from hostdev_testing.apiserver.resources import Obj, ResourceType
from hostdev_testing.apiserver.selectors import Requirement, Selector, parse_fields
from hostdev_testing.apiserver.store import Store
from hostdev_testing.apiserver.watch import WatchRequest

DEFAULT_WATCH_SECONDS = 1800
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}
_VALIDATION = {"": "Warn", "Warn": "Warn", "Strict": "Strict", "Ignore": "Ignore"}


def _flag(query: Mapping[str, str], name: str) -> bool | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _number(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """The query string of a list, watch or write, parsed and checked like ListOptions."""

    fields: Selector
    watch: bool
    resource_version: str
    timeout_seconds: int | None
    bookmarks: bool
    limit: int
    continue_token: str
    dry_run: bool
    validation: str

    @classmethod
    def parse(
        cls, query: Mapping[str, str], rt: ResourceType, *, force_watch: bool = False
    ) -> Query:
        dry_run = query.get("dryRun", "")
        if dry_run not in ("", "All"):
            raise bad_request(f'dryRun: Unsupported value: "{dry_run}": supported values: "All"')
        validation = _VALIDATION.get(query.get("fieldValidation", ""))
        if validation is None:
            raise bad_request(f"invalid fieldValidation directive: {query.get('fieldValidation')}")
        return cls(
            fields=parse_fields(query.get("fieldSelector", ""), rt),
            watch=force_watch or bool(_flag(query, "watch")),
            resource_version=query.get("resourceVersion", ""),
            timeout_seconds=_number(query, "timeoutSeconds"),
            bookmarks=bool(_flag(query, "allowWatchBookmarks")),
            limit=_number(query, "limit") or 0,
            continue_token=query.get("continue", ""),
            dry_run=dry_run == "All",
            validation=validation,
        )

    @property
    def write(self) -> WriteOptions:
        return WriteOptions(dry_run=self.dry_run, validation=self.validation)

    def for_name(self, name: str) -> Query:
        named = (*self.fields.requirements, Requirement("metadata.name", "=", (name,)))
        return replace(self, fields=Selector(named))

    def revision(self, store: Store) -> int | None:
        """The requested resourceVersion as a number; None for "" and "0" (any, or latest)."""
        if self.resource_version in ("", "0"):
            return None
        try:
            value = int(self.resource_version)
        except ValueError:
            raise bad_request(f'invalid resource version "{self.resource_version}"') from None
        if value > store.revision:
            raise errors.too_large_resource_version(value, store.revision)
        return value

    def watch_request(
        self, store: Store, rt: ResourceType, namespace: str | None, interval: float
    ) -> WatchRequest:
        # No resourceVersion (or "0"): the current objects first, as ADDED events.
        since = self.revision(store)
        return WatchRequest(
            rt=rt,
            namespace=namespace,
            fields=self.fields,
            since=since,
            initial_events=since is None,
            bookmarks=self.bookmarks,
            timeout=float(self.timeout_seconds or DEFAULT_WATCH_SECONDS),
            bookmark_interval=interval,
        )


def _encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"]).removesuffix("\x00")
    except (ValueError, KeyError, TypeError):
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ) from None


def _position(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def list_objects(registry: Registry, rt: ResourceType, namespace: str | None, query: Query) -> Obj:
    """A `<Kind>List`; items omit apiVersion and kind, as the real server's typed lists do."""
    revision = query.revision(registry.store) or registry.store.revision
    items = registry.select(rt, namespace, query.fields)
    if query.continue_token:
        revision, start = _decode_continue(query.continue_token)
        items = [o for o in items if _position(o) > start]
    meta: Obj = {"resourceVersion": str(revision)}
    if 0 < query.limit < len(items):
        rest = len(items) - query.limit
        items = items[: query.limit]
        meta["continue"] = _encode_continue(revision, _position(items[-1]))
        if not query.fields.requirements:
            meta["remainingItemCount"] = rest
    for item in items:
        item.pop("apiVersion", None)
        item.pop("kind", None)
    return {
        "kind": f"{rt.kind}List",
        "apiVersion": rt.api_version,
        "metadata": meta,
        "items": items,
    }

"""Hypothesis strategies built from the message structs, and a runner for async entry points.

Strategies come from `msgspec.inspect`, so a new message or field in hostdev_events is
fuzzed without anyone listing it. Inputs are JSON values (what goes on the wire), shaped like
the target type, mutated away from it, shaped like another message, or no JSON at all.

Two modes, chosen by HOSTDEV_FUZZ: `short` (CI: a few dozen inputs per entry point) and
`long` (at least 10,000 per entry point). HOSTDEV_FUZZ_EXAMPLES overrides the count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import json
import os
import pkgutil
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostdev_events
from hostdev_events.base import Message

T = TypeVar("T")

MODE_ENV = "HOSTDEV_FUZZ"
EXAMPLES_ENV = "HOSTDEV_FUZZ_EXAMPLES"
COUNTS_ENV = "HOSTDEV_FUZZ_COUNTS"  # a file the session's counts are written to, as JSON
# Comma-separated entry point names (`nats dp.list`): only those are fed, to run again the
# ones a long run stopped on after a fix. Unset: every entry point.
ONLY_ENV = "HOSTDEV_FUZZ_ONLY"
SHORT_EXAMPLES = 40
LONG_EXAMPLES = 10_000
# The NATS server's default max_payload: the largest message a service can be sent.
MAX_PAYLOAD = 1024 * 1024
# One input must be answered within this long; more is a hang.
INPUT_DEADLINE = 30.0

# Inputs per entry point in this run, printed at the end of the session.
COUNTS: Counter[str] = Counter()

# Names, namespaces, UIDs and paths that have broken drivers: traversal, separators, NUL,
# control characters, lengths past every limit, unicode that normalises or reverses.
TRICKY_TEXT = (
    "",
    ".",
    "..",
    "../",
    "../../etc/passwd",
    "/",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "a\x00b",
    "\x00",
    "a\nb",
    " ",
    "*",
    ">",
    "a.b",
    "$JS.API",
    "%2e%2e%2f",
    "é",
    "ﬁ",
    "\u202e",
    "🙂",
    "\ud800",
    "x" * 300,
    "y" * 70_000,
)


def long_mode() -> bool:
    """Whether HOSTDEV_FUZZ asks for the long run."""
    return os.environ.get(MODE_ENV, "short") == "long"


def examples() -> int:
    """How many inputs each entry point gets in this run."""
    if EXAMPLES_ENV in os.environ:
        return int(os.environ[EXAMPLES_ENV])
    return LONG_EXAMPLES if long_mode() else SHORT_EXAMPLES


def selected(name: str) -> bool:
    """Whether HOSTDEV_FUZZ_ONLY (when set) names this entry point."""
    only = os.environ.get(ONLY_ENV, "")
    return not only or name in {n.strip() for n in only.split(",")}


def fuzz_settings(limit: int | None = None) -> settings:
    """Hypothesis settings of this run: no deadline (a real server answers), no database;
    `limit` caps the inputs of an entry point whose every input is expensive."""
    return settings(
        max_examples=examples() if limit is None else min(limit, examples()),
        deadline=None,
        database=None,
        derandomize=not long_mode(),  # CI runs the same inputs each time
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


@functools.cache
def texts() -> st.SearchStrategy[str]:
    """Any text, biased to the tricky ones."""
    return st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=40))


@functools.cache
def json_values() -> st.SearchStrategy[Any]:
    """Any JSON document."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(texts(), inner, max_size=4)
        ),
        max_leaves=12,
    )


def _tagged_structs() -> tuple[type[Message], ...]:
    found: dict[str, type[Message]] = {}
    for module in pkgutil.iter_modules(hostdev_events.__path__):
        loaded = importlib.import_module(f"hostdev_events.{module.name}")
        for value in vars(loaded).values():
            if isinstance(value, type) and issubclass(value, Message) and value is not Message:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return tuple(found[k] for k in sorted(found))


MESSAGES = _tagged_structs()


@functools.cache
def shaped(kind: Any) -> st.SearchStrategy[Any]:
    """JSON values with the shape of `kind` (a Struct or any type msgspec knows)."""
    return _from_info(mi.type_info(kind))


def _int(info: mi.IntType) -> st.SearchStrategy[Any]:
    low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else None)
    high = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else None)
    return st.one_of(
        st.integers(min_value=low, max_value=high),
        st.sampled_from([0, -1, 2**31, 2**63 - 1, -(2**63)]),
    )


def _struct(info: mi.StructType) -> st.SearchStrategy[Any]:
    required = {f.encode_name: _from_info(f.type) for f in info.fields if f.required}
    optional = {f.encode_name: _from_info(f.type) for f in info.fields if not f.required}
    if info.tag_field is not None:
        required[info.tag_field] = st.just(info.tag)
    return st.fixed_dictionaries(required, optional=optional)


def _from_info(info: mi.Type) -> st.SearchStrategy[Any]:
    match info:
        case mi.StructType():
            return st.deferred(lambda: _struct(info))
        case mi.IntType():
            return _int(info)
        case mi.FloatType():
            return st.floats(allow_nan=False, allow_infinity=False)
        case mi.StrType(pattern=str() as pattern):
            return st.one_of(st.from_regex(pattern, fullmatch=True), texts())
        case mi.StrType():
            return texts()
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.ListType() | mi.VarTupleType() | mi.SetType() | mi.FrozenSetType():
            return st.lists(_from_info(info.item_type), max_size=5)
        case mi.TupleType():
            return st.tuples(*(_from_info(t) for t in info.item_types)).map(list)
        case mi.DictType():
            return st.dictionaries(
                _from_info(info.key_type), _from_info(info.value_type), max_size=4
            )
        case mi.UnionType():
            return st.one_of(*(_from_info(t) for t in info.types))
        case mi.LiteralType():
            return st.sampled_from(list(info.values))
        case mi.EnumType():
            return st.sampled_from([m.value for m in info.cls])
        case mi.TypedDictType() | mi.DataclassType() | mi.NamedTupleType():
            return st.dictionaries(texts(), json_values(), max_size=4)
        case _:
            return json_values()


def _mutated(value: Any, draw: st.DrawFn) -> Any:
    """One field removed, retyped or renamed, or the tag replaced."""
    if not isinstance(value, dict) or not value:
        return draw(json_values())
    key = draw(st.sampled_from(sorted(value)))
    action = draw(st.sampled_from(["drop", "retype", "tag", "extra"]))
    out = dict(value)
    if action == "drop":
        del out[key]
    elif action == "retype":
        out[key] = draw(json_values())
    elif action == "tag":
        out["type"] = draw(st.one_of(texts(), st.sampled_from(["error.v1", "x.v999"])))
    else:
        out[draw(texts())] = draw(json_values())
    return out


def _huge(value: Any, size: int) -> bytes:
    """The message grown to about `size` bytes: one of its texts made long, or padding added
    when it has none."""
    if isinstance(value, dict):
        key = next((k for k, v in value.items() if isinstance(v, str) and k != "type"), "padding")
        base = len(encode({**value, key: ""}))
        return encode({**value, key: "z" * max(0, size - base)})
    return encode(["z" * max(0, size - 4)])


def encode(value: Any) -> bytes:
    """JSON bytes; lone surrogates are escaped as JSON allows, which decoders must refuse."""
    return json.dumps(value).encode()


def payloads(kind: type[Message]) -> st.SearchStrategy[bytes]:
    """What may arrive on a subject whose messages must decode as `kind`."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        way = draw(st.sampled_from(["bytes", "json", "shaped", "mutated", "other", "huge"]))
        if way == "bytes":
            return draw(st.binary(max_size=256))
        if way == "json":
            return encode(draw(json_values()))
        if way == "shaped":
            return encode(draw(shaped(kind)))
        if way == "mutated":
            return encode(_mutated(draw(shaped(kind)), draw))
        if way == "other":
            other = draw(st.sampled_from(MESSAGES))
            return encode(draw(shaped(other)))
        # Just under the limit too: an answer quoting the request can outgrow it.
        size = draw(st.sampled_from([64_000, 500_000, MAX_PAYLOAD - draw(st.integers(0, 2048))]))
        return _huge(draw(shaped(kind)), size)

    def sendable(payload: bytes) -> bytes:
        # The client refuses a message over max_payload before it leaves: cut to a size a
        # service can receive (cut JSON is one more malformed input).
        return payload[:MAX_PAYLOAD]

    return build().map(sendable)


@functools.cache
def utf8_texts() -> st.SearchStrategy[str]:
    """`texts()` that protobuf can carry: lone surrogates become U+FFFD."""
    return texts().map(lambda t: t.encode("utf-8", "replace").decode("utf-8"))


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _proto_scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return utf8_texts()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if kind == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        return proto_messages(field.message_type, depth + 1)
    low, high = _INT_RANGES[kind]
    return st.integers(min_value=low, max_value=high)


def _proto_field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        keys = _proto_scalar(message.fields_by_name["key"], depth)
        values = _proto_scalar(message.fields_by_name["value"], depth)
        return st.dictionaries(keys, values, max_size=3)
    if field.is_repeated:
        return st.lists(_proto_scalar(field, depth), max_size=3)
    return _proto_scalar(field, depth)


def proto_messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of `descriptor`'s type with random values in random subsets of its fields."""
    cls = message_factory.GetMessageClass(descriptor)
    fields = [] if depth > 3 else list(descriptor.fields)
    optional = {f.name: _proto_field(f, depth) for f in fields}
    return st.fixed_dictionaries({}, optional=optional).map(lambda kwargs: cls(**kwargs))


def run(
    name: str,
    strategy: st.SearchStrategy[T],
    check: Callable[[T], None],
    limit: int | None = None,
) -> None:
    """Feed `strategy`'s inputs to `check` under this run's settings, counting them."""
    if not selected(name):
        return

    @fuzz_settings(limit)
    @given(strategy)
    def one(value: T) -> None:
        COUNTS[name] += 1
        check(value)

    one()


async def run_async(
    name: str,
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Awaitable[None]],
    deadline: float = INPUT_DEADLINE,
    limit: int | None = None,
) -> None:
    """`run` for a coroutine check on this loop: Hypothesis draws in a worker thread while the
    services under test keep running here. An input not handled within `deadline` fails."""
    loop = asyncio.get_running_loop()

    def blocking(value: T) -> None:
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(check, value), loop)
        try:
            future.result(timeout=deadline)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(f"{name}: no answer within {deadline}s (a hang)") from None

    await asyncio.to_thread(run, name, strategy, blocking, limit)


async def _as_coroutine(check: Callable[[T], Awaitable[None]], value: T) -> None:
    await check(value)


def file_tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, bytes | None]:
    """Every path under `root` (outside `skip`) and its content (None for non-files)."""
    tree: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        relative = str(path.relative_to(root))
        if path.is_symlink() or not path.is_file():
            tree[relative] = None
        else:
            tree[relative] = path.read_bytes()
    return tree


def summary() -> list[str]:
    """One line per entry point fuzzed in this run."""
    return [f"{count:>8}  {name}" for name, count in sorted(COUNTS.items())]


def decode_reply(data: bytes) -> Message:
    """A reply must be one of the bus's messages (an ErrorReply among them)."""
    decoded: Message = msgspec.json.decode(data, type=_ANY_MESSAGE)
    return decoded


_ANY_MESSAGE: Any = MESSAGES[0]
for _kind in MESSAGES[1:]:
    _ANY_MESSAGE = _ANY_MESSAGE | _kind

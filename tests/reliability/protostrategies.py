"""Hypothesis strategies for any protobuf message, built from its descriptor.

Every field gets values across its whole type (ints at their limits, floats with
NaN and infinities, text with odd code points, enums with unknown numbers,
bounded repeated fields and nesting), so a fuzz test covers every request
message of every RPC without a hand-written strategy per message.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

_FD = FieldDescriptor
_INT_RANGES = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1),
    _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT64: (0, 2**64 - 1),
    _FD.TYPE_FIXED64: (0, 2**64 - 1),
}
MAX_REPEATED = 6  # items per repeated field: enough for odd lengths, bounded for speed
MAX_DEPTH = 3  # message nesting

# Finite floats at the edges (issue 23: 1e160 overflowed a fit, 1e155 broke lstsq, 1e158
# answered "inf units/s"), the smallest subnormal, and float32's largest.
EXTREME_FLOATS = (1.7976931348623157e308, -1.7976931348623157e308, 1e160, -1e158, 1e155, 1e12, 1.8e9,
                  5e-324, -5e-324, 1e-45, 3.4028234663852886e38)
# Strings that are numbers only to str.isdigit() (superscripts, Arabic-Indic, fullwidth,
# mathematical digits), numbers past uint32/uint64, and strings far longer than any name.
HOSTILE_NUMERALS = ("²", "٣", "１２", "𝟗", "4294967297", "18446744073709551617", "9" * 400, "01", "+1")
OVERSIZED_TEXT = ("x" * (256 << 10), "é" * (64 << 10))


def extreme_floats(width: int = 64) -> st.SearchStrategy[float]:
    """Any float of the width, with the extreme finite ones drawn often."""
    extremes = [v for v in EXTREME_FLOATS if width == 64 or abs(v) <= 3.4028234663852886e38]
    return st.one_of(st.floats(width=width, allow_nan=True, allow_infinity=True), st.sampled_from(extremes))


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Odd short text, number look-alikes and oversized strings (echoed errors must stay short)."""
    return st.one_of(st.text(max_size=max_size), st.sampled_from(HOSTILE_NUMERALS), st.sampled_from(OVERSIZED_TEXT))


def _int(lo: int, hi: int) -> st.SearchStrategy[int]:
    # Small values hit the code paths; the limits hit overflow handling.
    return st.one_of(st.integers(-3, 64).filter(lambda v: lo <= v <= hi), st.sampled_from([lo, hi]),
                     st.integers(lo, hi))


def _scalar(field: FieldDescriptor, overrides: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    t = field.type
    if field.name in overrides:
        return overrides[field.name]
    if t in _INT_RANGES:
        return _int(*_INT_RANGES[t])
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return extreme_floats(64 if t == _FD.TYPE_DOUBLE else 32)
    if t == _FD.TYPE_BOOL:
        return st.booleans()
    if t == _FD.TYPE_STRING:
        return hostile_text()
    if t == _FD.TYPE_BYTES:
        return st.binary(max_size=512)
    if t == _FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 1000))  # proto3 keeps unknown numbers
    raise TypeError(f"no strategy for field {field.full_name} of type {t}")


def messages(
    descriptor: Descriptor,
    cls: type[Message],
    *,
    overrides: dict[str, st.SearchStrategy[Any]] | None = None,
    required: frozenset[str] = frozenset(),
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Messages of ``cls``; ``overrides`` maps a field name (at any depth) to its own strategy;
    top-level fields named in ``required`` are always set (the others may be absent)."""
    ov = overrides or {}
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        repeated = field.is_repeated
        if field.type == _FD.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                key = _scalar(field.message_type.fields_by_name["key"], {})
                vfield = field.message_type.fields_by_name["value"]
                if vfield.type == _FD.TYPE_MESSAGE:
                    continue  # no map of messages in trajlab's contracts
                parts[field.name] = st.dictionaries(key, _scalar(vfield, ov), max_size=MAX_REPEATED)
                continue
            if field.name in ov:
                inner = ov[field.name]
            elif depth >= MAX_DEPTH:
                continue
            else:
                sub_cls = GetMessageClass(field.message_type)
                inner = messages(field.message_type, sub_cls, overrides=ov, depth=depth + 1)
        else:
            inner = _scalar(field, ov)
        parts[field.name] = st.lists(inner, max_size=MAX_REPEATED) if repeated else inner
    always = {k: v for k, v in parts.items() if k in required}
    maybe = {k: v for k, v in parts.items() if k not in required}
    return st.fixed_dictionaries(always, optional=maybe).map(lambda kw: _build(cls, kw))


def _build(cls: type[Message], kw: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in kw.items():
        field = msg.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            target = getattr(msg, name)
            if field.type == _FD.TYPE_MESSAGE and not isinstance(value, dict):
                for v in value:
                    target.add().CopyFrom(v)
            elif isinstance(value, dict):
                target.update(value)
            else:
                target.extend(value)
        elif field.type == _FD.TYPE_MESSAGE:
            getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg

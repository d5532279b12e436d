"""A job spec's params: the one-pass check of flat params decides as the full check.

``JobSpec`` checks the common kind of params (flat, ASCII, 64-bit ints) in one pass and
sends everything else through ``_canonical`` and a ``CODEC.encode``. Whatever params are
given, a spec must be accepted exactly when the full check accepts them, and refused
with its words.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import CodecError
from mabeam.cluster._store_types import CODEC, _canonical, _flat
from mabeam.cluster.store import InvalidSpecError, JobSpec

_EDGE_INTS = st.sampled_from([0, -1, (1 << 63) - 1, -(1 << 63), 1 << 63, -(1 << 63) - 1, 1 << 64])
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.integers(),
    _EDGE_INTS,
    st.text(max_size=8),
    st.sampled_from(["\ud800", "é", "x" * 3, ""]),  # a lone surrogate, non-ASCII
    st.binary(max_size=4),
    st.builds(object),
)
_KEYS = st.one_of(st.text(max_size=6), st.sampled_from(["\udfff", "ключ"]), st.integers(0, 3))
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


def _full_check(params: dict[Any, Any]) -> str | None:
    """What the full check says of ``params``: None, or the error ``JobSpec`` words."""
    try:
        canonical = _canonical(params, "spec.params")
        CODEC.encode(canonical)
    except InvalidSpecError as exc:
        return str(exc)
    except CodecError as exc:
        return f"spec.params: not storable: {exc}"
    return None


def _spec_check(params: dict[Any, Any]) -> str | None:
    try:
        JobSpec("pkg.mod:fn", params)
    except InvalidSpecError as exc:
        return str(exc)
    return None


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=5))
def test_a_spec_takes_exactly_the_params_the_full_check_takes(params: dict[Any, Any]) -> None:
    full = _full_check(params)
    if _flat(params):
        assert full is None  # the one pass never takes what the full check refuses
    spec = _spec_check(params)
    if full is None:
        # Accepted by the checks; the hash may still refuse (a lone surrogate cannot be
        # flat, so that refusal comes from the full path in both).
        assert spec is None or "cannot be hashed" in spec
    else:
        assert spec == full


@pytest.mark.parametrize(
    ("params", "flat"),
    [
        ({"lr": 0.1, "n": 3, "name": "a", "on": True, "none": None}, True),
        ({"n": (1 << 63) - 1}, True),
        ({"n": 1 << 63}, False),  # past int64: refused, by the full check's words
        ({"name": "é"}, False),  # non-ASCII: measured by the full check
        ({"k": [1, 2]}, False),  # nested
        ({"k": b"x"}, False),
        ({1: 2}, False),
        ({"k": "x" * (1 << 20)}, False),  # over the one pass's size bound
    ],
)
def test_which_params_the_one_pass_takes(params: dict[Any, Any], flat: bool) -> None:
    assert _flat(params) is flat
    assert _spec_check(params) == _full_check(params) or _full_check(params) is None

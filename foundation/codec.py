"""msgpack encoding for everything that crosses a process boundary (never pickle).

Pids, actor refs and tuples travel as msgpack ext types 1, 2 and 3; the wire format and
the limits are described in the ``Codec`` documentation. Every failure, on either side,
raises ``foundation.CodecError``.
"""

from contextlib import suppress

from ._codec import Codec as Codec
from ._codec import decode as decode
from ._codec import encode as encode

__all__ = ("Codec", "decode", "encode")


def _fixup_module_metadata() -> None:
    """Show public paths (``foundation.codec.Codec``) in reprs and docs, as trio does."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("foundation._"):
            with suppress(AttributeError, TypeError):
                obj.__module__ = __name__


_fixup_module_metadata()
del _fixup_module_metadata

"""msgpack encoding for everything that crosses a process boundary (never pickle).

Pids, actor refs and tuples travel as msgpack ext types 1, 2 and 3; the wire format and
the limits are described in the ``Codec`` documentation. Every failure, on either side,
raises ``foundation.CodecError``.
"""

from ._codec import Codec as Codec
from ._codec import decode as decode
from ._codec import encode as encode
from ._public import fixup_module_metadata

__all__ = ("Codec", "decode", "encode")


fixup_module_metadata(__name__, globals())

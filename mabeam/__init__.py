"""mabeam: multi-agent ML coordination on the foundation actor runtime.

Agents, coordination protocols, economics, ML search and the cluster (coordinator and
node agents over ZeroMQ) will live here; they are in progress. The ``mabeam`` console
script is in ``mabeam.cli``.
"""

__all__ = ()

"""supervision: OTP behaviours on the foundation kernel (in progress).

Supervisor, DynamicSupervisor, TaskSupervisor and Application will live here.

The import name ``supervision`` is also used by Roboflow's computer-vision package; the
two cannot be installed in the same environment.
"""

__all__ = ()

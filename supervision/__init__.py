"""supervision: OTP behaviours on the foundation kernel.

Supervisor trees (one_for_one, one_for_all, rest_for_one, restart intensity, shutdown
rules, auto_shutdown), dynamic and task supervisors, applications, and supervision for
existing pykka actors.

The import name ``supervision`` is also used by Roboflow's computer-vision package; the
two cannot be installed in one environment.
"""

from foundation._public import fixup_module_metadata

from ._child import ChildCounts as ChildCounts
from ._child import ChildInfo as ChildInfo
from ._child import SupervisorStatistics as SupervisorStatistics
from ._exceptions import ChildAlreadyPresent as ChildAlreadyPresent
from ._exceptions import ChildAlreadyStarted as ChildAlreadyStarted
from ._exceptions import ChildNotFound as ChildNotFound
from ._exceptions import ChildRunning as ChildRunning
from ._exceptions import InvalidChildSpec as InvalidChildSpec
from ._exceptions import InvalidSupervisorFlags as InvalidSupervisorFlags
from ._exceptions import MaxChildren as MaxChildren
from ._exceptions import StartChildError as StartChildError
from ._exceptions import SupervisionError as SupervisionError
from ._spec import ChildSpec as ChildSpec
from ._spec import check_child_specs as check_child_specs
from ._spec import child_spec as child_spec
from ._supervisor import Supervisor as Supervisor

__all__ = (
    "ChildAlreadyPresent",
    "ChildAlreadyStarted",
    "ChildCounts",
    "ChildInfo",
    "ChildNotFound",
    "ChildRunning",
    "ChildSpec",
    "InvalidChildSpec",
    "InvalidSupervisorFlags",
    "MaxChildren",
    "StartChildError",
    "SupervisionError",
    "Supervisor",
    "SupervisorStatistics",
    "check_child_specs",
    "child_spec",
)

fixup_module_metadata(__name__, globals())

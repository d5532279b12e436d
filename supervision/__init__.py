"""supervision: OTP behaviours on the foundation kernel.

Supervisor trees (one_for_one, one_for_all, rest_for_one, restart intensity, shutdown
rules, auto_shutdown), dynamic and task supervisors, applications, and supervision for
existing pykka actors.

The import name ``supervision`` is also used by Roboflow's computer-vision package; the
two cannot be installed in one environment.
"""

from foundation._public import fixup_module_metadata

from ._application import Application as Application
from ._application import ExitStatus as ExitStatus
from ._child import ChildCounts as ChildCounts
from ._child import ChildInfo as ChildInfo
from ._child import SupervisorStatistics as SupervisorStatistics
from ._dynamic import DynamicSupervisor as DynamicSupervisor
from ._exceptions import ChildAlreadyPresent as ChildAlreadyPresent
from ._exceptions import ChildAlreadyStarted as ChildAlreadyStarted
from ._exceptions import ChildNotFound as ChildNotFound
from ._exceptions import ChildRunning as ChildRunning
from ._exceptions import InvalidChildSpec as InvalidChildSpec
from ._exceptions import InvalidSupervisorFlags as InvalidSupervisorFlags
from ._exceptions import MaxChildren as MaxChildren
from ._exceptions import StartChildError as StartChildError
from ._exceptions import SupervisionError as SupervisionError
from ._exceptions import TaskFailed as TaskFailed
from ._pykka import PykkaBridge as PykkaBridge
from ._pykka import PykkaCall as PykkaCall
from ._pykka import pykka_child as pykka_child
from ._spec import ChildSpec as ChildSpec
from ._spec import check_child_specs as check_child_specs
from ._spec import child_spec as child_spec
from ._stream import StreamResult as StreamResult
from ._stream import TaskStream as TaskStream
from ._supervisor import Supervisor as Supervisor
from ._tasks import Task as Task
from ._tasks import TaskSupervisor as TaskSupervisor
from ._tree import TreeNode as TreeNode
from ._tree import format_tree as format_tree
from ._tree import tree as tree
from ._tree import tree_renderable as tree_renderable

__all__ = (
    "Application",
    "ChildAlreadyPresent",
    "ChildAlreadyStarted",
    "ChildCounts",
    "ChildInfo",
    "ChildNotFound",
    "ChildRunning",
    "ChildSpec",
    "DynamicSupervisor",
    "ExitStatus",
    "InvalidChildSpec",
    "InvalidSupervisorFlags",
    "MaxChildren",
    "PykkaBridge",
    "PykkaCall",
    "StartChildError",
    "StreamResult",
    "SupervisionError",
    "Supervisor",
    "SupervisorStatistics",
    "Task",
    "TaskFailed",
    "TaskStream",
    "TaskSupervisor",
    "TreeNode",
    "check_child_specs",
    "child_spec",
    "format_tree",
    "pykka_child",
    "tree",
    "tree_renderable",
)

fixup_module_metadata(__name__, globals())

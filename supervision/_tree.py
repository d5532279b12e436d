"""Tree dump: a snapshot of a live supervision tree, as text, a dict or a rich tree.

::

    node = await tree("shop")              # a ref or a registered name
    print(format_tree(node))
    # shop  <0.1> Supervisor one_for_one
    # ├── db  <0.2> Database  restarts=0  mailbox=0
    # └── workers  <0.3> DynamicSupervisor one_for_one  restarts=1
    #     └── Worker  <0.9> Worker  restarts=0  mailbox=2

The walk asks each supervisor for ``which_children`` (in start order) and the kernel for
each actor's class and mailbox length. A tree changes while it is walked: a subtree
that exits meanwhile is shown with no children, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from foundation import ActorDead, ActorRef, CallTimeout, current_runtime, lowlevel

from ._child import ChildInfo

if TYPE_CHECKING:
    from rich.tree import Tree


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One actor of a supervision tree.

    Attributes:
        id: the child id in its supervisor (the root: its registered name, else pid).
        pid: ``"<0.12>"``, or None when the child is not running.
        actor: the actor's class name (None when not running).
        kind: ``"supervisor"`` or ``"worker"``.
        status: ``"running"``, ``"restarting"`` or ``"undefined"`` (not running).
        restarts: how many times its supervisor restarted it (0 for the root).
        mailbox: messages waiting in its mailbox (None when not running).
        strategy: a supervisor's restart strategy (None for workers).
        children: a supervisor's children in start order.
    """

    id: Any
    pid: str | None
    actor: str | None
    kind: str
    status: str
    restarts: int
    mailbox: int | None
    strategy: str | None = None
    children: tuple[TreeNode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The node as plain data (str, int, None, list, dict): JSON and msgpack safe."""
        return {
            "id": _plain_id(self.id),
            "pid": self.pid,
            "actor": self.actor,
            "kind": self.kind,
            "status": self.status,
            "restarts": self.restarts,
            "mailbox": self.mailbox,
            "strategy": self.strategy,
            "children": [c.to_dict() for c in self.children],
        }

    def walk(self) -> list[TreeNode]:
        """This node and every node under it, depth first in start order."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


def _plain_id(child_id: Any) -> str | int:
    if isinstance(child_id, str) or (isinstance(child_id, int) and not isinstance(child_id, bool)):
        return child_id
    return repr(child_id)


async def tree(sup: Any, *, timeout: float | None = 5.0) -> TreeNode:
    """Walk the live tree under ``sup`` (a ref or a registered name).

    Raises:
        ActorDead: no such actor is alive.
    """
    rt = current_runtime()
    ref = sup if isinstance(sup, ActorRef) else rt.whereis(sup)
    if ref is None or not ref.is_alive:
        raise ActorDead(sup, "noproc")
    root_id = ref.name if ref.name is not None else repr(ref.pid)
    return await _node(ref, root_id, "running", 0, timeout)


async def _node(
    ref: ActorRef | None, child_id: Any, status: str, restarts: int, timeout: float | None
) -> TreeNode:
    actor = None if ref is None else lowlevel.actor_instance(ref)
    is_sup = bool(getattr(actor, "_is_supervisor", False))
    kind = "supervisor" if is_sup else "worker"
    info = None if ref is None else current_runtime().info(ref)
    if ref is None or info is None:
        return TreeNode(child_id, None, None, kind, status, restarts, None)
    pid, cls_name = repr(ref.pid), str(info["actor"])
    mailbox = int(info["mailbox"].length)
    if not is_sup:
        return TreeNode(child_id, pid, cls_name, kind, status, restarts, mailbox)
    behaviour = type(actor)
    strategy = getattr(actor, "strategy", "one_for_one")
    rows: list[ChildInfo] = []
    which = getattr(behaviour, "which_children", None)
    if which is not None:
        try:
            rows = await which(ref, timeout=timeout)
        except (ActorDead, CallTimeout):
            rows = []  # it exited (or is busy restarting a large group) meanwhile
    children = tuple(
        [await _node(row.ref, row.id, row.status, row.restarts, timeout) for row in rows]
    )
    return TreeNode(
        child_id, pid, cls_name, kind, status, restarts, mailbox, str(strategy), children
    )


def _label(node: TreeNode, root: bool) -> tuple[str, str, str]:
    """(id, where, details) of one line of the dump."""
    where = node.pid if node.pid is not None else f"({node.status})"
    what = [node.actor] if node.actor is not None else []
    if node.strategy is not None:
        what.append(node.strategy)
    details = []
    if node.status == "restarting" and node.pid is not None:
        details.append("restarting")
    if not root:
        details.append(f"restarts={node.restarts}")
    if node.mailbox is not None and (node.kind == "worker" or node.mailbox):
        details.append(f"mailbox={node.mailbox}")
    head = f"{where} {' '.join(what)}".rstrip()
    return str(node.id), head, "  ".join(details)


def format_tree(node: TreeNode) -> str:
    """The tree as plain text with box-drawing lines, one actor per line."""
    lines: list[str] = []

    def line(n: TreeNode, prefix: str, branch: str, root: bool) -> None:
        ident, head, details = _label(n, root)
        text = f"{ident}  {head}"
        lines.append(f"{prefix}{branch}{text}  {details}" if details else f"{prefix}{branch}{text}")
        below = prefix + ("" if root else ("    " if branch == "└── " else "│   "))
        for i, child in enumerate(n.children):
            last = i == len(n.children) - 1
            line(child, below, "└── " if last else "├── ", False)

    line(node, "", "", True)
    return "\n".join(lines)


def tree_renderable(node: TreeNode) -> Tree:
    """The tree as a ``rich.tree.Tree`` (for ``console.print``)."""
    from rich.markup import escape
    from rich.tree import Tree

    def label(n: TreeNode, root: bool) -> str:
        ident, head, details = _label(n, root)
        style = "bold cyan" if n.kind == "supervisor" else "green"
        if n.pid is None:
            style = "red"
        text = f"[{style}]{escape(ident)}[/]  [dim]{escape(head)}[/]"
        if n.restarts and not root:
            details = details.replace(f"restarts={n.restarts}", f"[yellow]restarts={n.restarts}[/]")
        return f"{text}  {details}" if details else text

    def add(parent: Tree, n: TreeNode) -> None:
        branch = parent.add(label(n, False))
        for child in n.children:
            add(branch, child)

    root = Tree(label(node, True), guide_style="dim")
    for child in node.children:
        add(root, child)
    return root

"""Every background task runs under a supervisor: no bare tasks or threads outside the kernel.

Only ``foundation/`` (the kernel) starts event-loop tasks and threads. ``supervision/``
and ``mabeam/`` run background work as actors under a supervisor (a ``TaskSupervisor``
for plain async functions) and blocking work with ``rt.to_thread``. This static scan
(``ast``, so it also covers code no test runs) fails on the ways to start work that
nothing supervises:

- ``asyncio.create_task``, ``asyncio.ensure_future``, any ``<x>.create_task(...)``
  (``loop.create_task``, an ``asyncio.TaskGroup``'s), ``asyncio.TaskGroup()``;
- any ``<x>.start_soon(...)`` / ``<x>.start_task_soon(...)`` (anyio task groups, trio
  nurseries, anyio portals), ``anyio.create_task_group()``, ``trio.open_nursery()``;
- ``threading.Thread(...)``, ``threading.Timer(...)``, a subclass of ``threading.Thread``,
  ``_thread.start_new_thread``, ``concurrent.futures.ThreadPoolExecutor(...)`` and
  ``ProcessPoolExecutor(...)``;
- the kernel's own back door, ``<x>._backend.start(...)`` / ``start_actor(...)``.

Imports are followed (``import asyncio as aio``, ``from threading import Thread as T``,
``from concurrent import futures``). A line with ``# allow-bare: <reason>`` is exempt;
``test_the_exemptions_are_listed_with_their_reasons`` prints every exemption, and an
exemption without a reason counts as an offence.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("supervision", "mabeam")
EXEMPT_MARK = "allow-bare:"

# Fully qualified callables that start unsupervised work.
BANNED_CALLS = frozenset(
    {
        "asyncio.create_task",
        "asyncio.ensure_future",
        "asyncio.TaskGroup",
        "anyio.create_task_group",
        "trio.open_nursery",
        "threading.Thread",
        "threading.Timer",
        "_thread.start_new_thread",
        "concurrent.futures.ThreadPoolExecutor",
        "concurrent.futures.ProcessPoolExecutor",
        "concurrent.futures.thread.ThreadPoolExecutor",
        "concurrent.futures.process.ProcessPoolExecutor",
    }
)
# Methods that spawn whatever object they are called on.
BANNED_METHODS = frozenset({"create_task", "start_soon", "start_task_soon"})
BANNED_BASES = frozenset({"threading.Thread"})
KERNEL_BACKDOOR = frozenset({"start", "start_actor"})


@dataclass(frozen=True)
class Finding:
    """One place that starts unsupervised work (``reason`` set when it is exempt)."""

    filename: str
    line: int
    code: str
    reason: str | None = None

    def __str__(self) -> str:
        why = f"  [allow-bare: {self.reason}]" if self.reason else ""
        return f"{self.filename}:{self.line}: {self.code}{why}"


class _Imports(ast.NodeVisitor):
    """Local names bound by imports -> the dotted path they stand for."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname is not None:
                self.names[alias.asname] = alias.name
            else:  # ``import concurrent.futures`` binds ``concurrent``
                top = alias.name.split(".")[0]
                self.names[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module is None or node.level:
            return  # relative imports are the project's own modules
        for alias in node.names:
            self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _qualified(node: ast.expr, imports: dict[str, str]) -> str | None:
    parts = _dotted(node)
    if parts is None or parts[0] not in imports:
        return None
    return ".".join([imports[parts[0]], *parts[1:]])


def _offence(node: ast.AST, imports: dict[str, str]) -> bool:
    if isinstance(node, ast.ClassDef):
        return any(_qualified(base, imports) in BANNED_BASES for base in node.bases)
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if _qualified(func, imports) in BANNED_CALLS:
        return True
    if isinstance(func, ast.Attribute):
        if func.attr in BANNED_METHODS:
            return True
        receiver = func.value
        if (
            func.attr in KERNEL_BACKDOOR
            and isinstance(receiver, ast.Attribute)
            and receiver.attr == "_backend"
        ):
            return True
    return False


def _exemption(node: ast.AST, lines: list[str]) -> str | None:
    """The reason of an ``# allow-bare: reason`` comment on the node's lines ("" if the
    mark has no reason), or None when there is no mark."""
    first = getattr(node, "lineno", 1)
    last = getattr(node, "end_lineno", None) or first
    if isinstance(node, ast.ClassDef):
        last = first  # the class line, not its whole body
    for line in lines[first - 1 : last]:
        _, hash_sign, comment = line.partition("#")
        if hash_sign and EXEMPT_MARK in comment:
            return comment.split(EXEMPT_MARK, 1)[1].strip()
    return None


def scan(source: str, filename: str) -> list[Finding]:
    """Every place in ``source`` that starts unsupervised work, exempt ones included."""
    tree = ast.parse(source, filename=filename)
    collector = _Imports()
    collector.visit(tree)
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not _offence(node, collector.names):
            continue
        lineno = getattr(node, "lineno", 0)
        code = lines[lineno - 1].strip() if lineno else ast.unparse(node)
        found.append(Finding(filename, lineno, code, _exemption(node, lines)))
    return sorted(found, key=lambda f: (f.filename, f.line))


def _python_files() -> list[Path]:
    return sorted(
        p for d in SCANNED_DIRS for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts
    )


def _scan_project() -> list[Finding]:
    found: list[Finding] = []
    for path in _python_files():
        name = str(path.relative_to(ROOT))
        try:
            found += scan(path.read_text(encoding="utf-8"), name)
        except SyntaxError as exc:
            found.append(Finding(name, exc.lineno or 0, f"cannot parse ({exc.msg})"))
    return found


def test_no_bare_task_or_thread_is_started_outside_the_kernel() -> None:
    files = _python_files()
    assert any(p.parts[-2:] == ("supervision", "_tasks.py") for p in files)
    offenders = [f for f in _scan_project() if not f.reason]
    assert not offenders, (
        "background work in supervision/ and mabeam/ runs under a supervisor "
        "(TaskSupervisor.start_child / async_nolink, or an actor in a supervision tree; "
        "blocking calls in rt.to_thread). Bare tasks and threads found (mark a justified "
        "line with '# allow-bare: why'):\n" + "\n".join(map(str, offenders))
    )


def test_the_exemptions_are_listed_with_their_reasons() -> None:
    exempt = [f for f in _scan_project() if f.reason]
    # Shown with ``pytest -rA``. A reason says why, in more than one word ("ok" does not).
    print(f"{len(exempt)} allow-bare exemption(s)")
    for finding in exempt:
        print(f"  {finding}")
    terse = [str(f) for f in exempt if len((f.reason or "").split()) < 2]
    assert not terse, "say why each bare task is needed:\n" + "\n".join(terse)


SAMPLE = textwrap.dedent(
    """\
    import asyncio
    import asyncio as aio
    import threading, _thread
    import concurrent.futures
    from concurrent import futures
    from concurrent.futures import ThreadPoolExecutor as Pool
    from threading import Thread
    import anyio, trio
    from .tasks import create_task_group

    async def f(loop, tg, portal, rt):
        asyncio.create_task(job())
        aio.ensure_future(job())
        loop.create_task(job())
        tg.start_soon(job)
        portal.start_task_soon(job)
        threading.Thread(target=work).start()
        Thread(
            target=work,
        )
        concurrent.futures.ThreadPoolExecutor(4)
        futures.ProcessPoolExecutor()
        Pool()
        _thread.start_new_thread(work, ())
        async with anyio.create_task_group() as g:
            pass
        async with trio.open_nursery() as n:
            pass
        rt._backend.start(job)
        threading.Timer(1.0, work)
        tg.start_soon(job)  # allow-bare: the sample's exempt line
        await rt.to_thread(work)
        await anyio.to_thread.run_sync(work)
        threading.Lock()
        create_task_group()
        asyncio.TaskGroup()
        loop.call_soon(work)

    class Worker(threading.Thread):
        pass

    class Exempt(Thread):  # allow-bare: a sample exemption on a class
        pass
    """
)


def test_the_scanner_catches_every_form_of_bare_task_in_a_crafted_sample() -> None:
    found = scan(SAMPLE, "sample.py")
    offending = [f.line for f in found if f.reason is None]
    assert offending == [12, 13, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 27, 29, 30, 36, 39]
    exempt = [(f.line, f.reason) for f in found if f.reason is not None]
    assert exempt == [
        (31, "the sample's exempt line"),
        (42, "a sample exemption on a class"),
    ]


def test_a_mark_without_a_reason_does_not_exempt() -> None:
    source = "import threading\nthreading.Thread(target=f)  # allow-bare:\n"
    (finding,) = scan(source, "x.py")
    assert finding.reason == "" and not finding.reason
    assert str(finding) == "x.py:2: threading.Thread(target=f)  # allow-bare:"


def test_the_scanner_reports_file_line_and_code() -> None:
    (finding,) = scan("import asyncio\n\nasyncio.create_task(main())\n", "y.py")
    assert str(finding) == "y.py:3: asyncio.create_task(main())"

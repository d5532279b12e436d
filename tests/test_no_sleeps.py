"""No real sleeps under tests/ or benchmarks/: every wait is on an event or virtual time.

The scan is static (``ast``), so it also covers code paths no test happens to run. It
flags calls of ``time.sleep``, ``asyncio.sleep``, ``anyio.sleep`` and ``trio.sleep``,
however imported (``import time as t``, ``from anyio import sleep as nap``), unless the
delay is the literal ``0`` (a plain yield to the scheduler). A line with an
``# allow-sleep`` comment is exempt; say on that line why the sleep is needed.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("tests", "benchmarks")
SLEEP_MODULES = frozenset({"time", "asyncio", "anyio", "trio"})
EXEMPT_MARK = "allow-sleep"


def find_sleeps(source: str, filename: str) -> list[str]:
    """Return ``"file:line: call"`` for each real sleep in ``source``."""
    tree = ast.parse(source, filename=filename)
    lines = source.splitlines()
    module_aliases: dict[str, str] = {}  # local name -> sleep module it refers to
    sleep_aliases: dict[str, str] = {}  # local name -> module whose sleep it is
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in SLEEP_MODULES:
                    module_aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module in SLEEP_MODULES:
            for alias in node.names:
                if alias.name == "sleep":
                    sleep_aliases[alias.asname or alias.name] = node.module

    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        module = None
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "sleep"
            and isinstance(func.value, ast.Name)
        ):
            name = func.value.id
            module = module_aliases.get(name, name if name in SLEEP_MODULES else None)
        elif isinstance(func, ast.Name):
            module = sleep_aliases.get(func.id)
        if module is None or _is_literal_zero(node) or _is_exempt(node, lines):
            continue
        found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=_line_order)


def _is_literal_zero(call: ast.Call) -> bool:
    delays = list(call.args[:1]) + [k.value for k in call.keywords if k.arg in {"delay", "seconds"}]
    if len(delays) != 1:
        return False
    delay = delays[0]
    return (
        isinstance(delay, ast.Constant) and type(delay.value) in (int, float) and delay.value == 0
    )


def _is_exempt(call: ast.Call, lines: list[str]) -> bool:
    last = call.end_lineno or call.lineno
    for line in lines[call.lineno - 1 : last]:
        _, hash_sign, comment = line.partition("#")
        if hash_sign and EXEMPT_MARK in comment:
            return True
    return False


def _line_order(entry: str) -> tuple[str, int]:
    filename, line, _ = entry.split(":", 2)
    return filename, int(line)


def _python_files() -> list[Path]:
    return sorted(
        p for d in SCANNED_DIRS for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts
    )


def test_no_real_sleeps_under_tests_or_benchmarks() -> None:
    files = _python_files()
    assert Path(__file__).resolve() in files, "the scan must cover this very file"
    offenders: list[str] = []
    for path in files:
        name = str(path.relative_to(ROOT))
        try:
            offenders += find_sleeps(path.read_text(encoding="utf-8"), name)
        except SyntaxError as exc:
            offenders.append(f"{name}:{exc.lineno}: cannot parse ({exc.msg})")
    assert not offenders, (
        "real sleeps are banned under tests/ and benchmarks/; wait on an event or on "
        "virtual time (or mark a justified line with '# allow-sleep: why'):\n"
        + "\n".join(offenders)
    )


SAMPLE = textwrap.dedent(
    """\
    import time
    import asyncio as aio
    import anyio, trio
    from anyio import sleep
    from trio import sleep as nap

    async def f():
        time.SLEEP(0.1)
        await aio.sleep(1)
        await anyio.sleep(delay=0.5)
        await trio.sleep(seconds)
        await sleep(0.01)
        await nap(
            2,
        )
        await asyncio.SLEEP(3)
        time.sleep(False)
        await aio.sleep()
        await anyio.sleep(0)
        await trio.sleep(0.0)
        await sleep(0)
        time.sleep(5)  # allow-sleep: waits for a real subprocess
        await other.sleep(1)
        await self.sleep(1)
        sleep_forever()
    """
).replace("SLEEP", "sleep")  # spelled apart so line-based greps do not flag the sample


def test_the_scanner_catches_every_form_of_real_sleep_in_a_crafted_sample() -> None:
    lines = [int(entry.split(":")[1]) for entry in find_sleeps(SAMPLE, "sample.py")]
    assert lines == [8, 9, 10, 11, 12, 13, 16, 17, 18]


def test_the_scanner_reports_file_line_and_call() -> None:
    source, expected = "import time\n\ntime.SLEEP(1)\n", "x.py:3: time.SLEEP(1)"
    assert find_sleeps(source.replace("SLEEP", "sleep"), "x.py") == [
        expected.replace("SLEEP", "sleep")
    ]

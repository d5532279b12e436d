"""The chaos suite's helpers import tests/mabeam/cluster_harness.py and each other."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "mabeam"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

"""``python -m mabeam``: the same as the ``mabeam`` console script."""

import sys

from mabeam.cli import main

sys.exit(main())

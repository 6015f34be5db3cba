"""``python -m shoal.cli``: the ``shoal`` command."""

from __future__ import annotations

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m shoal``: the command-line interface."""

from shoal.cli.main import main

raise SystemExit(main())

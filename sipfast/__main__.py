"""`python -m sipfast` is the `sipfast` command."""

from sipfast.cli import main

raise SystemExit(main())

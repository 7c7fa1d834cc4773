"""`python -m lstmkit.cli`: the `lstmkit` command."""

import sys

from lstmkit.cli import main

sys.exit(main())

"""`python -m lstmkit ...`, the form torchrun starts: `torchrun --nproc_per_node 2 -m lstmkit lm train ...`."""

import sys

from lstmkit.cli import main

sys.exit(main())

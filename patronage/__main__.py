"""`python -m patronage`."""

import sys

from patronage.cli import main

sys.exit(main())

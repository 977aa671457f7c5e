"""`python -m broadcaster`."""

import sys

from broadcaster.cli import main

sys.exit(main())

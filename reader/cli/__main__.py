"""`python -m reader.cli`: the same as `sscard`."""

import sys

from reader.cli import main

sys.exit(main())

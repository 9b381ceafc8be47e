"""Entry point for ``python -m capstone``."""

import sys

from capstone.apps.cli import main

sys.exit(main())

"""Entry point for ``python -m capstone``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m ltd_hub.cli``."""

import sys

from ltd_hub.cli.main import main

sys.exit(main())

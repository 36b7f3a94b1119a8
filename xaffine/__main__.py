"""``python -m xaffine``: the same as the ``xaffine`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m xaffine``: the same as the ``xaffine`` command."""

import sys

from ._cli import main

sys.exit(main())

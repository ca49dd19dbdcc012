"""``python3 -m tests.thirdparty``: see :mod:`tests.thirdparty.run`."""

import sys

from .run import main

sys.exit(main())

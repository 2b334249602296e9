"""`python -m mailsvc`: the same as the console script."""

import sys

from mailsvc.cli import main

sys.exit(main())

"""`python -m mailsvc`: the same as the console script."""

from mailsvc.cli import entry

entry()

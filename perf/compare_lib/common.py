"""What every module uses: the failure that stops a comparison, and the log."""

import sys


class Fail(Exception):
    """A reason to stop the comparison with a non-zero exit."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: leave through the same clean-up as an error."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)

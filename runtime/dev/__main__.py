"""`python -m runtime.dev`: the hot-reload dev daemon (`python -m runtime dev`)."""

import sys

from runtime.cli import exit_now, main

exit_now(main(["dev", *sys.argv[1:]]))

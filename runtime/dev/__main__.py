"""`python -m runtime.dev`: the hot-reload dev daemon (`python -m runtime dev`)."""

import sys

from runtime.cli import main

sys.exit(main(["dev", *sys.argv[1:]]))

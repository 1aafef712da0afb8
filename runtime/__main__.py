"""`python -m runtime`: see runtime.cli."""

from runtime.cli import exit_now, main

exit_now(main())

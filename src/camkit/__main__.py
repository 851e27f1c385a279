"""`python -m camkit ...` is the `camkit` command."""

import sys

from camkit.cli import main

sys.exit(main())

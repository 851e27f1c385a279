"""`python -m camkit ...` is the `camkit` command."""

import sys

from camkit_command import main

sys.exit(main())

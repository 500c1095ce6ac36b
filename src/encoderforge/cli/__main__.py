"""`python -m encoderforge.cli ...` (used to start servers in a subprocess)."""

import sys

from encoderforge.cli import main

sys.exit(main())

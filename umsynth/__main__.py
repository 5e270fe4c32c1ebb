import sys

from umsynth.cli import main

sys.exit(main())

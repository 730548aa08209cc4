import sys

from jepa_kit.cli import main

sys.exit(main())

import sys

from masktrack.cli.main import main

sys.exit(main())

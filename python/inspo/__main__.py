import sys

from inspo.cli import main

sys.exit(main())

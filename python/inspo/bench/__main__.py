import sys

from inspo.bench.cli import main

sys.exit(main())

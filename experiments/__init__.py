"""What regenerates this repository's own documents (docs/RESULTS.md, docs/SMAX.md's campaign): run from the
repository root as `python -m experiments.results`, `python -m experiments.smax`, ... (README.md there).
Not part of the wheel; it uses the installed `inspo` and `inspo_ext`.

`python -m` puts the current folder (the repository root) first on sys.path, where the source folder
`inspo_ext/` (without its compiled module) would shadow the installed package: it goes last instead.
"""

import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _entry in [entry for entry in sys.path if os.path.abspath(entry or os.curdir) == _root]:
    sys.path.remove(_entry)
sys.path.append(_root)

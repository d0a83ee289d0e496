"""Fixtures every test module can ask for by name: `backend` (ops_testing) and `float64` (train_testing).

The experiments (`experiments/`, not in the wheel) are imported from the checkout: its root goes last on
sys.path, after the installed packages, so that the source folder `inspo_ext/` (without its compiled module)
never shadows the installed `inspo_ext`.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.append(ROOT)

pytest_plugins = ["ops_testing", "train_testing"]

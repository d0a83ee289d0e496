"""The source checkout's `inspo_ext/` folder hiding an installed inspo_ext.

The package lives at the repository root, so Python run there (`python -c`, `python -m`, whose first sys.path
entry is the current folder) imports the source folder, which holds no compiled module, instead of the installed
package beside its compiled one. It would run the reference ops instead of the kernels (other float32
rounding) with only a warning: refused with how to run instead. An editable install is not affected (its
import hook serves the compiled module to the source folder), nor a checkout that is not installed anywhere.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def refuse_a_shadowed_install(name: str, here: Path) -> None:
    """Raise ImportError when package `name` was imported from the folder `here` of a source checkout without
    a compiled module while an installed copy with one lies further down sys.path."""
    here = here.resolve()
    if not (here.parent / "CMakeLists.txt").is_file() or importlib.util.find_spec(f"{name}._C") is not None:
        return
    for entry in sys.path:
        folder = Path(entry or ".").resolve() / name
        if folder != here and (folder / "__init__.py").is_file() and any(folder.glob("_C.*")):
            raise ImportError(
                f"{name} was imported from the source folder {here}, which sys.path puts ahead of the "
                f"installed package {folder} (Python puts the current folder first for `python -c` and `python -m`): run "
                "Python from another folder (the `inspo` command and pytest are not affected), or install the checkout "
                "with `pip install -e .`"
            )

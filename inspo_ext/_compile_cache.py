"""torch.compile's on-disk caches key a compiled graph by the ops it calls, not by what a custom op's registered
Python autograd does: with torch 2.13, a compiled step whose op had a changed backward was served the old backward
from the cache, silently (tests/test_ops_compile_cache.py shows it on a toy op). Importing inspo_ext therefore adds
this package's fingerprint (its Python sources and the native sources' hash) to torch.compiler.config.cache_key_tag,
which every torch.compile cache folds into its keys: another inspo_ext compiles anew, the same one reuses the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch


def fingerprint(package: Path, native_hash: Optional[str]) -> str:
    """16 hex digits of the package's .py files (by name and content) and the native sources' hash."""
    digest = hashlib.sha256((native_hash or "no compiled module").encode())
    for path in sorted(package.glob("*.py")):
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def tag_compile_caches(native_hash: Optional[str]) -> str:
    """Appends `inspo_ext-<fingerprint>` to torch.compiler.config.cache_key_tag (kept: a tag set before); returns it."""
    tag = f"inspo_ext-{fingerprint(Path(__file__).parent, native_hash)}"
    current = torch.compiler.config.cache_key_tag
    if tag not in current.split("+"):
        torch.compiler.config.cache_key_tag = f"{current}+{tag}" if current else tag
    return tag

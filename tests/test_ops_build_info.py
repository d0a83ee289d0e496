"""The build records the native sources it was built from (CMakeLists.txt: SOURCE_HASH), and the sweep's code
version follows it, so a kernel change does not reuse runs finished under the old kernels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import inspo_ext
from inspo.sweep import execute
from inspo_ext import _backend

ROOT = Path(__file__).resolve().parents[1]


def tree_source_hash() -> str:
    """CMakeLists.txt's hash of this tree: sha256 of 'path sha256\\n' over csrc/** and CMakeLists.txt, sorted."""
    paths = sorted([p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc").rglob("*") if p.is_file()])
    paths = sorted(paths + ["CMakeLists.txt"])
    manifest = "".join(f"{p} {hashlib.sha256((ROOT / p).read_bytes()).hexdigest()}\n" for p in paths)
    return hashlib.sha256(manifest.encode()).hexdigest()[:16]


@pytest.mark.skipif(not _backend.COMPILED, reason="needs the compiled module inspo_ext._C")
def test_build_info_has_the_hash_of_the_native_sources_of_this_tree():
    info = inspo_ext.build_info()
    assert info["source_hash"] == _backend.SOURCE_HASH == _backend._C.SOURCE_HASH
    assert info["source_hash"] == tree_source_hash(), "the compiled module is older than csrc/: rebuild it"


def test_the_code_version_follows_the_native_sources(monkeypatch):
    monkeypatch.setattr(execute, "source_hash", lambda packages: "the python sources")  # the slow part, fixed
    monkeypatch.setattr(_backend, "SOURCE_HASH", "0123456789abcdef")
    before = execute.code_version()
    assert execute.code_version() == before and len(before) == 16
    monkeypatch.setattr(_backend, "SOURCE_HASH", "fedcba9876543210")
    assert execute.code_version() != before
    monkeypatch.setattr(_backend, "SOURCE_HASH", None)  # no compiled module
    assert execute.code_version() != before

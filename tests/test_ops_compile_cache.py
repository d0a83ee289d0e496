"""torch.compile's caches and inspo_ext's fingerprint (inspo_ext/_compile_cache.py): torch serves a custom op's
compiled backward from its on-disk cache even after the op's registered backward changed, unless the cache key tag
changes; importing inspo_ext adds a tag that changes with its sources."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import inspo_ext
from inspo_ext import _backend
from inspo_ext._compile_cache import fingerprint, tag_compile_caches

# A toy custom op whose registered backward multiplies by $BACKWARD_SCALE: a stand-in for an op whose backward
# changed between two versions of a package. Prints the compiled step's gradient.
TOY = textwrap.dedent(
    """
    import os, torch
    scale = float(os.environ["BACKWARD_SCALE"])

    @torch.library.custom_op("cache_probe::square", mutates_args=())
    def square(x: torch.Tensor) -> torch.Tensor:
        return x * x

    @square.register_fake
    def _(x):
        return torch.empty_like(x)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * scale * x

    square.register_autograd(backward, setup_context=setup_context)
    x = torch.ones(3, requires_grad=True)
    torch.compile(lambda x: square(x).sum(), fullgraph=True)(x).backward()
    print(x.grad[0].item())
    """
)


def compiled_gradient(cache: Path, scale: float, tag: str) -> float:
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "BACKWARD_SCALE": str(scale),
        "TORCH_COMPILE_CACHE_KEY_TAG": tag,
    }
    out = subprocess.run([sys.executable, "-c", TOY], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])


def test_a_changed_backward_is_served_stale_unless_the_cache_key_tag_changes(tmp_path):
    cache = tmp_path / "inductor"
    assert compiled_gradient(cache, 2.0, "v1") == 2.0
    # why inspo_ext tags the caches: the same key, a different backward, the old gradient
    assert compiled_gradient(cache, 3.0, "v1") == 2.0
    # what the tag does: another tag, the new backward
    assert compiled_gradient(cache, 3.0, "v2") == 3.0


def test_the_fingerprint_follows_every_python_source_and_the_native_hash(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    (package / "b.py").write_text("def backward(g):\n    return g\n")
    (package / "notes.txt").write_text("not a source")
    before = fingerprint(package, "abc")
    assert fingerprint(package, "abc") == before
    assert fingerprint(package, "abd") != before
    assert fingerprint(package, None) != before
    (package / "notes.txt").write_text("still not a source")
    assert fingerprint(package, "abc") == before
    (package / "b.py").write_text("def backward(g):\n    return 2 * g\n")
    assert fingerprint(package, "abc") != before


def test_importing_inspo_ext_tags_the_caches_and_keeps_a_tag_set_before():
    tag = f"inspo_ext-{fingerprint(Path(inspo_ext.__file__).parent, _backend.SOURCE_HASH)}"
    imported = torch.compiler.config.cache_key_tag
    assert tag in imported.split("+")
    try:  # (not monkeypatch: its undo deletes the attribute from torch's config module)
        torch.compiler.config.cache_key_tag = "users-own"
        assert tag_compile_caches(_backend.SOURCE_HASH) == tag
        assert torch.compiler.config.cache_key_tag == f"users-own+{tag}"
        tag_compile_caches(_backend.SOURCE_HASH)  # idempotent
        assert torch.compiler.config.cache_key_tag == f"users-own+{tag}"
    finally:
        torch.compiler.config.cache_key_tag = imported

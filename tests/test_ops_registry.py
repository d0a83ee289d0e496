"""Every op is in every place it must be: the C++ table (csrc/common/backends.h INSPO_OPS), its field table
(args.h OPArgs_FIELDS), its kernel files, its OpSpec, its reference twin, its public export, its benchmark
and its test file. A new op that forgets one of them fails here, naming the op and the place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import inspo_ext
from inspo.bench import ops as bench_ops
from inspo_ext import _backend, _spec, reference

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"


def cpp_ops() -> list[tuple[str, str]]:
    """(op, argument struct) of every X(op, Args) line of INSPO_OPS, in order."""
    text = (CSRC / "common" / "backends.h").read_text()
    table = re.search(r"#define INSPO_OPS\(X\)((?:.*\\\n)*.*\n)", text).group(1)
    return re.findall(r"X\((\w+), (\w+)\)", table)


def cpp_fields(args: str) -> list[tuple[str, str, str, str]]:
    """(kind, type, name, what) of every field of args.h `<args>_FIELDS`, in order (comments dropped)."""
    text = (CSRC / "common" / "args.h").read_text()
    match = re.search(rf"#define {args}_FIELDS\(X\)((?:.*\\\n)*.*\n)", text)
    assert match, f"csrc/common/args.h has no field table {args}_FIELDS"
    body = re.sub(r"/\*.*?\*/", "", match.group(1).replace("\\\n", "\n"), flags=re.S)
    return [
        tuple(part.strip() for part in f) for f in re.findall(r"X\((\w+),\s*(\w+),\s*(\w+),\s*(.*?)\)\s*$", body, re.M)
    ]


OP_NAMES = [op for op, _ in cpp_ops()]
CPP_TYPES = {None: "T", torch.bool: "bool", torch.int64: "int64_t", torch.float64: "double"}
ARRAY_KINDS = {"first", "in", "in_opt", "order", "out", "out_opt"}


def test_the_cpp_table_lists_the_ops_of_the_python_specs():
    assert OP_NAMES, "no X(op, Args) line found in INSPO_OPS"
    assert sorted(OP_NAMES) == sorted(_spec.OPS), "INSPO_OPS (backends.h) and the OpSpecs (inspo_ext/OP.py) differ"
    if _backend.COMPILED:
        assert list(_backend._C.OPS) == OP_NAMES  # the module was built from this table


@pytest.mark.parametrize("op, args", cpp_ops())
def test_the_field_table_matches_the_spec(op, args):
    """The _C function's parameters (the array and scalar fields, in order) are the OpSpec's inputs, outputs and
    kernel scalars, with the same optionality, element types and (where plain) dims."""
    spec = _spec.OPS[op]
    fields = [f for f in cpp_fields(args) if f[0] in ARRAY_KINDS | {"scalar"}]
    flags = {o.when for o in spec.outputs if o.when is not None}
    expected = (
        [("in_opt" if a.optional else "in", CPP_TYPES[a.dtype], a.name, a.dims) for a in spec.inputs]
        + [("out_opt" if o.when else "out", CPP_TYPES[o.dtype], o.name, o.dims) for o in spec.outputs]
        + [("scalar", None, name, None) for name, _ in spec.scalars if name not in flags]
    )
    assert [f[2] for f in fields] == [e[2] for e in expected], f"{args}_FIELDS and {op}'s OpSpec name other arguments"
    for (kind, ctype, name, what), want in zip(fields, expected):
        if want[0] == "scalar":
            assert kind == "scalar", (op, name)
            continue
        assert kind.replace("first", "in").replace("order", "in") == want[0], (op, name, kind)
        assert ctype == want[1], (op, name, ctype)
        plain = re.fullmatch(r"\(([BNA](?:, [BNA])*)\)", what)
        if plain:
            assert f"[{plain.group(1)}]" == want[3], (op, name, what)
    for flag in flags:
        assert any(f[0] == "present" and f[2] == flag for f in cpp_fields(args)), (op, flag)


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_has_its_kernels_reference_export_benchmark_and_tests(op):
    cpu, cuda = CSRC / "cpu" / f"{op}.cpp", CSRC / "cuda" / f"{op}.cu"
    assert f"INSPO_INSTANTIATE_CPU({op})" in cpu.read_text(), f"{cpu} must end in INSPO_INSTANTIATE_CPU({op})"
    assert f"INSPO_INSTANTIATE_CUDA({op})" in cuda.read_text(), f"{cuda} must end in INSPO_INSTANTIATE_CUDA({op})"
    assert callable(getattr(reference, op, None)), f"inspo_ext.reference has no {op}"
    assert callable(_spec.OPS[op].reference_status), f"{op}'s OpSpec has no reference status"
    assert op in inspo_ext.__all__ and callable(getattr(inspo_ext, op)), f"inspo_ext does not export {op}"
    assert (ROOT / "tests" / f"test_ops_{op}.py").is_file(), f"tests/test_ops_{op}.py is missing"
    assert op in bench_ops.OPS, f"inspo bench has no benchmark of {op}"


@pytest.mark.parametrize("op", OP_NAMES)
def test_the_benchmark_setup_is_a_valid_call(op):
    """The inputs the bench draws from the spec pass the op's checks (on the kernels, or the fallback)."""
    bench = bench_ops.OPS[op]
    inputs = bench.setup(bench_ops.Size(16, 3, 4), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert set(inputs) == {a.name for a in bench.inputs}
    out = bench.call(inspo_ext, inputs)
    for t in out if isinstance(out, tuple) else (out,):
        assert not t.is_floating_point() or torch.isfinite(t).all(), op

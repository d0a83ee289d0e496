"""Smoke tests of `inspo bench` (not timed tests: nothing here asserts a speed).

The harness must run end to end, compare implementations that compute the same thing, and measure
what it claims to measure (peak memory of a known allocation, quartiles around the median).
"""

import csv
import math

import pytest
import torch

from inspo.bench import ops as bench_ops
from inspo.bench.timing import TimingPolicy, measure, peak_memory_bytes
from inspo.cli.bench import main
from inspo_ext import reference

CPU = torch.device("cpu")


def test_quick_run_writes_every_row(tmp_path, capfd):
    assert main(["--quick", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    printed = capfd.readouterr()
    # a smoke run judges no target, and the profiler's own lines stay off stderr
    assert "targets not judged: --quick is a smoke run" in printed.out
    assert "MISSED" not in printed.out and "MET" not in printed.out
    assert "STAGE:" not in printed.err and "profiler" not in printed.err.lower(), printed.err
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    measured = {(r["section"], r["op"], r["impl"], r["mode"]) for r in rows if r["median_ms"]}
    for name, spec in bench_ops.OPS.items():
        for mode in spec.modes:
            for impl in ("ours", "eager"):
                assert ("ops", name, impl, mode) in measured, (name, impl, mode)
    for op in ("exact", "fused", "omiga"):
        for impl in ("ours", "eager"):
            assert ("iteration", f"iteration/{op}", impl, "full") in measured
    assert not [r for r in rows if r["note"].startswith("failed")]
    for row in rows:
        if row["median_ms"]:
            assert float(row["p25_ms"]) <= float(row["median_ms"]) <= float(row["p75_ms"])
            assert float(row["peak_mb"]) >= 0
    report = (tmp_path / "bench.md").read_text()
    assert "## Targets" in report and "memory bandwidth" in report


def test_ours_alone_over_several_batches_writes_its_table_without_a_plot(tmp_path):
    # no eager timings, so no speed-up to draw: the run still writes its table (it once failed in the plot)
    argv = ["--sections", "ops", "--ops", "in_sample_weights", "--impls", "ours", "--modes", "fwd", "--batch", "64,128"]
    argv += ["--agents", "8", "--actions", "16", "--threads", "1", "--no-memory", "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert {int(r["batch"]) for r in rows if r["op"] == "in_sample_weights" and r["median_ms"]} == {64, 128}
    assert not list(tmp_path.glob("*.png"))


def _inputs(name):
    return bench_ops.OPS[name].setup(bench_ops.Size(64, 3, 5), CPU, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(bench_ops.OPS))
def test_implementations_agree_through_the_bench_calls(name):
    """ours, eager and the bench's adapter see the same arguments: same results (resample: same draws)."""
    spec = bench_ops.OPS[name]
    inputs = _inputs(name)
    implementations = bench_ops.make_implementations(("ours", "eager"))
    results = []
    for impl in implementations.values():
        if "generator" in inputs:
            inputs["generator"].manual_seed(7)
        results.append(spec.call(impl, inputs))
    ours, eager = results
    for a, b in zip(ours, eager):
        if name == "resample" and a.dtype == torch.int64:
            continue  # ours may draw its uniforms differently from the reference; ess must agree
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_reference_adapter_passes_arguments_in_order():
    inputs = _inputs("sequential_policy_loss")
    via_adapter = bench_ops.OPS["sequential_policy_loss"].call(bench_ops.ReferenceOps(), inputs)
    h = bench_ops.HYPER
    direct = reference.sequential_policy_loss(
        inputs["logits"],
        inputs["log_mu"],
        inputs["avail"],
        inputs["actions"],
        inputs["q_local"],
        inputs["order"],
        "target",
        None,
        h["alpha"],
        h["beta"],
        h["eta"],
        h["log_rho_max"],
        h["log_w_max"],
        "self_normalized",
    )
    for a, b in zip(via_adapter, direct):
        torch.testing.assert_close(a, b)


def test_peak_memory_sees_a_known_allocation():
    def region(_):
        first = torch.ones(1 << 20)  # 4 MiB
        second = first + 1  # 8 MiB live
        del first
        return second.sum()

    peak = peak_memory_bytes(region, lambda: None, CPU)
    assert 8 << 20 <= peak < (8 << 20) + 4096


def test_measure_reports_quartiles_of_the_repeats():
    stats = measure(
        lambda _: torch.randn(1000).sum(),
        lambda: None,
        CPU,
        TimingPolicy(warmup=1, min_repeats=7, max_repeats=7, min_time=0.0),
    )
    assert stats.repeats == 7
    assert 0 < stats.p25 <= stats.median <= stats.p75 and math.isfinite(stats.spread)

"""The compiled iteration (config.compile): one torch.compile graph, no graph break, no recompile after
the warm-up, and the same training as the eager iteration (float64)."""

import dataclasses
import json

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import inspo.learners.learner
from inspo.learners.inspo import InspoLearner
from inspo.learners.learner import replays_cuda_graphs
from inspo.loop import train_seeds
from ops_testing import cuda_ready
from train_testing import assert_same_run, tiny

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it


@pytest.fixture
def graph_capture(monkeypatch):
    """Dynamo's capture without inductor's code generation (graph breaks and recompiles are decided
    before the backend; the backend's numbers are torch's): a fresh dynamo state and counters."""
    monkeypatch.setattr(inspo.learners.learner, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=False):  # the test turns it on after the warm-up
        yield
    torch._dynamo.reset()


# warm-up 3: the critic-only iterations are their own graph; every later one reuses the second graph
@pytest.mark.parametrize(
    "algo, overrides, graphs",
    [
        ("inspo", {"inspo.mode": "fused", "inspo.critic_warmup_steps": 3}, 2),
        ("inspo", {"inspo.mode": "exact", "inspo.weighting": "importance"}, 1),
        ("inspo", {"inspo.mode": "exact", "share_parameters": True}, 1),
        ("bc", dict(bc_steps=12), 1),
        ("omiga", {}, 1),
    ],
)
def test_the_compiled_iteration_is_one_graph_and_trains_as_the_eager_one(
    algo, overrides, graphs, tmp_path, float64, graph_capture
):
    config = tiny(algo, 1, steps=12, bc_steps=overrides.pop("bc_steps", 10), log_every=3, **overrides)
    train_seeds([config], [tmp_path / "eager"], progress=False)
    compiled = tiny(algo, 1, steps=12, bc_steps=config.bc_steps, log_every=3, compile=True, **overrides)

    def no_recompile_after_warm_up(step):
        if step == (config.inspo.critic_warmup_steps if algo == "inspo" else 0) + 1:
            torch._dynamo.config.error_on_recompile = True

    # seed 1 batched with seed 2, compiled, against seed 1 alone, eager
    train_seeds(
        [compiled, dataclasses.replace(compiled, seed=2)],
        [tmp_path / "compiled", None],
        progress=False,
        on_step=no_recompile_after_warm_up,
    )
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == graphs
    assert_same_run(tmp_path / "compiled", tmp_path / "eager")
    compiled_results = json.loads((tmp_path / "compiled" / "results.json").read_text())
    assert 0 < compiled_results["compile_seconds"] < compiled_results["seconds"]
    assert "compile_seconds" not in json.loads((tmp_path / "eager" / "results.json").read_text())


def test_compile_refuses_a_beta_schedule():
    with pytest.raises(ValueError, match="config.compile needs a constant beta"):
        tiny("inspo", 0, compile=True, **{"inspo.beta_end": 0.0})


def test_the_compiled_step_is_replayed_as_a_cuda_graph_on_cuda_only():
    assert replays_cuda_graphs("cuda") and replays_cuda_graphs(torch.device("cuda", 1))
    assert not replays_cuda_graphs("cpu") and not replays_cuda_graphs(torch.device("cpu"))
    learner = InspoLearner(tiny("inspo", 0, compile=True), 1, inspo.learners.learner.Dims(2, 3, 4, 5))
    assert learner.cuda_graphs is False  # on the CPU: the plain compiled graph


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of inspo_ext")
@pytest.mark.parametrize("overrides", [dict(mode="fused"), dict(mode="exact", weighting="importance")])
def test_the_cuda_graph_replayed_step_trains_as_the_eager_one(overrides, tmp_path, float64):
    """On CUDA (inductor, mode="reduce-overhead"): no graph break, no recompile after the warm-up, no CUDA
    graph skipped, and (float64) the same run as the eager step on the same device."""
    torch._dynamo.reset()
    counters.clear()
    config = tiny("inspo", 1, steps=12, bc_steps=10, log_every=3, device="cuda", **overrides)
    train_seeds([config], [tmp_path / "eager"], progress=False)
    compiled = dataclasses.replace(config, compile=True)

    def no_recompile_after_warm_up(step):
        if step == 2:
            torch._dynamo.config.error_on_recompile = True

    with torch._dynamo.config.patch(error_on_recompile=False):
        train_seeds([compiled], [tmp_path / "graph"], progress=False, on_step=no_recompile_after_warm_up)
    torch._dynamo.reset()
    assert dict(counters["graph_break"]) == {}
    assert counters["inductor"]["cudagraph_skips"] == 0
    assert counters["inductor"]["cudagraph_recorded_non_static_inputs"] > 0  # recorded (batch, draws copied in)
    assert_same_run(tmp_path / "graph", tmp_path / "eager")

"""Seeds as a tensor dimension: a batched run's seed s is the single run with seed s (float64), its
run folders work with `inspo eval` and `--resume`, and resuming a batched run is bit-identical."""

import json

import pytest
import torch

from inspo.cli import main
from inspo.loop import train_seeds
from train_testing import assert_same_run, final_state, rows, tiny

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it


@pytest.mark.parametrize(
    "algo, overrides",
    [
        ("inspo", {"inspo.mode": "fused"}),
        ("inspo", {"inspo.mode": "exact"}),
        (
            "inspo",
            {
                "inspo.mode": "exact",
                "inspo.weighting": "self_normalized",
                "share_parameters": True,
                "inspo.policy_steps": 2,
            },
        ),
        (
            "inspo",
            {
                "inspo.mode": "simultaneous",
                "inspo.weighting": "importance",
                "inspo.resample_method": "systematic",
                "env": "mne",
                "dataset": "imbalanced",
            },
        ),
        ("bc", dict(bc_steps=200)),
        ("omiga", {"omiga.alpha": 1.0}),
    ],
)
def test_a_batched_seed_reaches_what_its_single_run_reaches(algo, overrides, tmp_path, float64):
    configs = [tiny(algo, seed, **overrides) for seed in (3, 4)]
    batched = train_seeds(configs, [tmp_path / "batched3", tmp_path / "batched4"], progress=False)
    states = []
    for config, together in zip(configs, batched):
        alone = train_seeds([config], [tmp_path / f"single{config.seed}"], progress=False)[0]
        assert together["scores"] == pytest.approx(alone["scores"], rel=1e-9, abs=1e-9)
        batched_dir = tmp_path / f"batched{config.seed}"
        assert_same_run(batched_dir, tmp_path / f"single{config.seed}")
        states.append(final_state(batched_dir))
    # the two seeds are different runs (so that mixing them up would show)
    actor_key = next(key for key in states[0] if key.startswith("actor."))
    assert not torch.allclose(states[0][actor_key], states[1][actor_key])


def test_resuming_a_batched_run_is_bit_identical_to_the_uninterrupted_run(tmp_path):
    configs = [
        tiny(
            "inspo",
            seed,
            env="bridge",
            steps=30,
            checkpoint_every=10,
            eval_every=10,
            log_every=5,
            **{"inspo.beta": 0.5, "inspo.beta_end": 0.0},
        )
        for seed in (0, 1)
    ]
    whole = train_seeds(configs, [tmp_path / "whole0", tmp_path / "whole1"], progress=False)

    def interrupt(step):
        if step == 25:
            raise KeyboardInterrupt

    cut = [tmp_path / "cut0", tmp_path / "cut1"]
    with pytest.raises(KeyboardInterrupt):
        train_seeds(configs, cut, progress=False, on_step=interrupt)
    resumed = train_seeds(configs, cut, resume=True, progress=False)
    for seed in (0, 1):
        assert resumed[seed]["scores"] == whole[seed]["scores"]
        final = final_state(tmp_path / f"whole{seed}"), final_state(cut[seed])
        for key, value in final[0].items():
            assert torch.equal(value, final[1][key]), key
        for kind in ("metrics", "eval"):
            strip = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
            assert [strip(r) for r in rows(cut[seed], kind)] == [
                strip(r) for r in rows(tmp_path / f"whole{seed}", kind)
            ]


def test_resume_refuses_checkpoints_of_another_algorithm(tmp_path):
    train_seeds([tiny("bc", 0, bc_steps=5)], [tmp_path], progress=False)
    with pytest.raises(ValueError, match="from algo 'bc', not 'inspo'"):
        train_seeds([tiny("inspo", 0)], [tmp_path], resume=True, progress=False)


def test_seed_batches_must_differ_only_in_the_seed():
    with pytest.raises(ValueError, match=r"differ only in their seed; these fields differ: \['lr'\]"):
        train_seeds([tiny("inspo", 0), tiny("inspo", 1, lr=1e-2)], progress=False)


def test_resume_may_raise_the_step_count(tmp_path):
    short, long = tiny("inspo", 0, steps=20), tiny("inspo", 0, steps=30)
    train_seeds([short], [tmp_path / "extended"], progress=False)
    extended = train_seeds([long], [tmp_path / "extended"], resume=True, progress=False)[0]
    assert extended["steps"] == 30 and [r["step"] for r in rows(tmp_path / "extended")][-2:] == [20, 30]


def test_cli_seeds_write_one_run_folder_each_that_eval_and_resume_accept(tmp_path, capsys):
    out = tmp_path / "runs"
    tiny_args = [
        "--set",
        "bc_steps=5",
        "--set",
        "batch_size=16",
        "--set",
        "hidden=8,8",
        "--set",
        "critic_hidden=8,8",
        "--set",
        "checkpoint_every=3",
        "--quiet",
    ]
    assert main(["train", "--env", "xor", "--seeds", "0-2", "--steps", "6", "--out", str(out), *tiny_args]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0", "seed1", "seed2"]
    table = capsys.readouterr().out
    assert table.count("inspo fused") == 3
    results = [json.loads((out / f"seed{s}" / "results.json").read_text()) for s in range(3)]
    assert [r["config"]["seed"] for r in results] == [0, 1, 2]
    assert main(["eval", str(out / "seed1"), "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(results[1]["scores"], abs=1e-6)
    # extend the finished batched run by resuming its folders together
    assert main(["train", "--out", str(out), "--resume", "--steps", "9", "--quiet"]) == 0
    assert [r["step"] for r in rows(out / "seed2")] == [6, 9]


@pytest.mark.parametrize("text", ["0-", "a", "2,2", "-1"])
def test_bad_seed_lists_are_refused(text, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--env", "xor", "--seeds", text])
    assert stop.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_in_float32_a_batched_seed_draws_what_its_single_run_draws(tmp_path, monkeypatch):
    """What holds in float32 (the default): every draw is the single run's; the numbers agree to float32
    rounding only, since the batched kernels order their reductions otherwise (a gradient's sum over the
    batch meets another memory layout), and a run that is sensitive to rounding can end elsewhere."""
    import inspo.loop
    from inspo.learners.inspo import InspoLearner

    drawn = []
    minibatch, draw = inspo.data.minibatch, InspoLearner.draw

    def recording_minibatch(store, rows, names=None):
        drawn.append(("rows", rows.clone()))
        return minibatch(store, rows, names)

    def recording_draw(self, generators, step):
        draws = draw(self, generators, step)
        drawn.append(("draws", {key: value.clone() for key, value in draws.items()}))
        return draws

    monkeypatch.setattr(inspo.loop, "minibatch", recording_minibatch)
    monkeypatch.setattr(InspoLearner, "draw", recording_draw)
    configs = [tiny("inspo", seed, env="bridge", dataset="mixed", steps=30) for seed in (0, 1, 2)]
    train_seeds(configs, [tmp_path / f"b{seed}" for seed in (0, 1, 2)], progress=False)
    batched, drawn[:] = list(drawn), []
    train_seeds([configs[2]], [tmp_path / "single"], progress=False)
    single = list(drawn)
    batched_rows = [rows for kind, rows in batched if kind == "rows"][2::3]  # seed 2's of each step
    single_rows = [rows for kind, rows in single if kind == "rows"]
    assert len(single_rows) == 30 and all(torch.equal(a, b) for a, b in zip(batched_rows, single_rows, strict=True))
    batched_draws = [draws for kind, draws in batched if kind == "draws"]
    single_draws = [draws for kind, draws in single if kind == "draws"]
    for together, alone in zip(batched_draws, single_draws, strict=True):
        assert together.keys() == alone.keys()
        for key in alone:
            assert torch.equal(together[key][2:3], alone[key]), key
    # the numbers: float32 rounding apart, not bit for bit
    state, other = final_state(tmp_path / "b2"), final_state(tmp_path / "single")
    for key in state:
        torch.testing.assert_close(state[key], other[key], rtol=1e-3, atol=1e-4, msg=key)

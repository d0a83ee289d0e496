"""The pieces of a SMAX run the protocol shares (experiments.smax.results): a run's config, marl-eval's layout of
a run, the final evaluation of a trained run; and the errors of `python -m experiments.smax`."""

import json

import pytest

pytest.importorskip("jaxmarl")
import smax_testing  # noqa: F401, E402  (fast compiles)
from experiments.smax import results  # noqa: E402
from experiments.smax.__main__ import main  # noqa: E402


def test_a_run_config_is_the_preset_then_the_shared_overrides_then_the_runs_own_fields(tmp_path):
    grid = results.GridConfig(data_root=tmp_path / "data", data_seed=2, overrides={"batch_size": 64, "steps": 5})
    config = results.run_config(grid, "3m", "medium", "inspo-exact", 3, extra=dict(steps=700))
    assert (config.steps, config.batch_size, config.seed) == (700, 64, 3)  # the run's fields over the shared ones
    assert (config.log_every, config.checkpoint_every, config.eval_episodes) == (250, 0, 32)  # SMAX_OVERRIDES
    assert (config.env, config.algo, config.algo_options.mode) == ("smax:3m", "inspo", "exact")
    assert (config.dataset, config.dataset_seed) == ("medium", 2)
    assert config.dataset_path == str(tmp_path / "data" / "3m" / "seed2" / "medium")
    assert results.dataset_dir(grid, "3m", "medium") == tmp_path / "data" / "3m" / "seed2" / "medium"
    bc = results.run_config(results.GridConfig(), "2s3z", "expert", "bc", 0)
    assert (bc.algo, bc.hidden) == ("bc", (128, 128))  # the SMAX preset's networks


def test_a_run_in_marl_evals_layout():
    curve = [
        dict(step=500 * k, greedy_return=0.1 * k, greedy_win_rate=0.05 * k, stochastic_return=0.2, loss=1.0)
        for k in (1, 2)
    ]
    final = dict(
        step=1000,
        greedy_return=[2.0, 1.0],
        greedy_win_rate=[1.0, 0.0],
        stochastic_return=[1.5, 0.5],
        stochastic_win_rate=[1.0, 0.0],
        train_seconds=30.0,
    )
    run = results.marl_eval_run(curve, final)
    assert run["step_1"] == dict(step_count=1000, greedy_return=[0.2], greedy_win_rate=[0.1], stochastic_return=[0.2])
    assert run["absolute_metrics"] == {metric: final[metric] for metric in results.FINAL_METRICS}
    assert sorted(run) == ["absolute_metrics", "step_0", "step_1"]
    assert results.marl_eval_run([], final) == {"absolute_metrics": run["absolute_metrics"]}  # a run without curve


@pytest.mark.slow
def test_the_final_evaluation_plays_the_final_policy_greedy_and_stochastic(tmp_path):
    from inspo.cli import main as inspo_main
    from inspo.smax.tiers import DataConfig, make_dataset

    data = make_dataset(DataConfig(map_name="3m", tier="scripted", episodes=12, root=tmp_path), log=lambda m: None)
    run_dir = tmp_path / "run"
    tiny = ["--steps", "3", "--set", "bc_steps=3", "--set", "batch_size=16", "--set", "hidden=8,8"]
    tiny += ["--set", "critic_hidden=8,8", "--set", "eval_episodes=16", "--seed", "2", "--quiet"]
    assert inspo_main(["train", "--env", "smax:3m", "--dataset-path", str(data), "--out", str(run_dir), *tiny]) == 0
    results.write_final_eval(run_dir, episodes=16, seed_offset=results.FINAL_SEED_OFFSET)
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert (final["step"], final["episodes"], final["seed"]) == (3, 16, results.FINAL_SEED_OFFSET + 2)
    assert final["train_seconds"] > 0
    for kind in ("greedy", "stochastic"):
        assert len(final[f"{kind}_return"]) == len(final[f"{kind}_win_rate"]) == 16
        assert set(final[f"{kind}_win_rate"]) <= {0.0, 1.0}
    again = results.final_evaluation(run_dir, 16, seed=results.FINAL_SEED_OFFSET + 2)  # the same battles
    assert {key: again[key] for key in results.FINAL_METRICS} == {key: final[key] for key in results.FINAL_METRICS}


def test_the_command_line_errors_name_what_is_wrong(tmp_path, capsys):
    assert main(["--record-datasets", "--out", str(tmp_path / "out")]) == 2
    assert "python -m experiments.smax: error: --record-datasets needs --campaign" in capsys.readouterr().err
    missing = tmp_path / "campaign.json"
    assert main(["--campaign", str(missing), "--table-only", "--out", str(tmp_path / "out")]) == 2
    assert f"python -m experiments.smax: error: --campaign {missing}: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--methods", "qmix"])
    assert "invalid choice: 'qmix'" in capsys.readouterr().err

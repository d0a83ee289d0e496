"""Options on the command line (SECTION.FIELD), and the flat config of older versions (`xor_variant`,
`omiga_alpha`, `cfcql_*` as TrainConfig fields), which still loads: an old run folder evaluates and
resumes, and the old names train what the new ones do."""

import json

import pytest
import torch

from inspo.cli import main
from inspo.config import LEGACY_FIELDS, TrainConfig, make_config
from inspo.runfolder import CHECKPOINT, CONFIG, RunFiles, load_checkpoint
from train_testing import tiny

# what an older version's TrainConfig held besides today's fields: every env's and algorithm's
# settings, whatever the run's env and algorithm (their defaults then, which are today's)
OLD_DEFAULTS = {
    "xor_variant": "penalty",
    "mne_diagonal": [10.0, 5.0, 8.0],
    "mne_sampling": "stratified",
    "omiga_alpha": 10.0,
    "mixer_hidden": 64,
    "cfcql_alpha": 50.0,
    "cfcql_weighting": "kl_softmax",
    "cfcql_temperature": 5.0,
    "cfcql_mixer_embed": 32,
    "cfcql_hypernet_hidden": 64,
}


def old_flat(config: TrainConfig) -> dict:
    """config.to_dict() as an older version wrote it into config.json and the checkpoint."""
    values = {name: value for name, value in config.to_dict().items() if name not in ("env_options", "algo_options")}
    values.update(OLD_DEFAULTS)
    for name, option in LEGACY_FIELDS.items():
        if option in config.to_overrides():
            value = config.to_overrides()[option]
            values[name] = list(value) if isinstance(value, tuple) else value
    return values


def test_the_legacy_names_are_every_option_with_its_old_default():
    assert set(OLD_DEFAULTS) == set(LEGACY_FIELDS)
    for name, option in LEGACY_FIELDS.items():
        section = option.split(".")[0]
        config = make_config("mne", algo=section) if section in ("omiga", "cfcql") else make_config(section)
        value = OLD_DEFAULTS[name]
        assert config.to_overrides()[option] == (tuple(value) if isinstance(value, list) else value), name


@pytest.mark.parametrize(
    "algo,env,old,new",
    [
        ("inspo", "xor", {"xor_variant": "plain"}, {"xor.variant": "plain"}),
        (
            "omiga",
            "mne",
            {"omiga_alpha": 1.0, "mixer_hidden": 6, "mne_sampling": "iid"},
            {"omiga.alpha": 1.0, "omiga.mixer_hidden": 6, "mne.sampling": "iid"},
        ),
        (
            "cfcql",
            "mne",
            {
                "cfcql_alpha": 1.0,
                "cfcql_weighting": "kl_argmax",
                "cfcql_mixer_embed": 5,
                "mne_diagonal": [9.0, 5.0, 8.0],
            },
            {
                "cfcql.alpha": 1.0,
                "cfcql.weighting": "kl_argmax",
                "cfcql.mixer_embed": 5,
                "mne.diagonal": (9.0, 5.0, 8.0),
            },
        ),
    ],
)
def test_the_old_flat_names_train_bit_identically_to_the_new(algo, env, old, new, tmp_path):
    from inspo.loop import train

    base = tiny(algo, 1, env=env, dataset="imbalanced" if env == "mne" else "d", steps=20, log_every=5)
    overrides = {name: value for name, value in base.to_overrides().items() if name != "env"}
    with_new = make_config(env, **{**overrides, **new})
    with_old = TrainConfig.from_dict({**old_flat(base), **old})
    assert with_old == with_new != base  # the old names took effect
    runs = {}
    for name, config in (("old", with_old), ("new", with_new), ("base", base)):
        train(config, out_dir=tmp_path / name, progress=False)
        runs[name] = load_checkpoint(tmp_path / name / CHECKPOINT)["actor"]
    assert all(torch.equal(runs["old"][key], runs["new"][key]) for key in runs["new"])
    assert not all(torch.equal(runs["base"][key], runs["new"][key]) for key in runs["new"])


def write_old_run(folder, config):
    """Rewrite a run folder's config.json and checkpoint into an older version's flat config."""
    flat = old_flat(config)
    (folder / CONFIG).write_text(json.dumps(flat))
    payload = load_checkpoint(folder / CHECKPOINT)
    files = RunFiles(folder, resume=True)  # (the folder holds its run: not a fresh one)
    files.save_checkpoint({**payload, "config": flat})
    files.close()


def test_an_old_run_folder_evaluates_and_resumes(tmp_path, capsys):
    out = tmp_path / "old"
    args = ["train", "--env", "xor", "--dataset", "d", "--algo", "cfcql", "--steps", "10", "--out", str(out)]
    args += ["--set", "xor.variant=plain", "--set", "cfcql.alpha=2", "--set", "bc_steps=10", "--set", "hidden=8,8"]
    args += ["--set", "checkpoint_every=10", "--quiet"]
    assert main(args) == 0
    config = TrainConfig.from_dict(json.loads((out / CONFIG).read_text()))
    write_old_run(out, config)
    assert "xor_variant" in json.loads((out / CONFIG).read_text())
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    assert "expected_payoff" in json.loads(capsys.readouterr().out)
    assert main(["train", "--out", str(out), "--resume", "--steps", "15", "--quiet"]) == 0
    resumed = load_checkpoint(out / CHECKPOINT)
    assert resumed["step"] == 15
    assert TrainConfig.from_dict(resumed["config"]) == TrainConfig.from_dict({**config.to_dict(), "steps": 15})
    assert resumed["config"]["algo_options"] == {"cfcql": {**resumed["config"]["algo_options"]["cfcql"], "alpha": 2.0}}
    assert resumed["config"]["env_options"] == {"xor": {"variant": "plain"}}


def test_the_main_job_gives_each_option_to_its_own_env(monkeypatch, capsys, tmp_path):
    import inspo.loop

    trained = []

    def fake_trainer(config, **kwargs):
        trained.append(config)
        return {"scores": {}, "seconds": 0.0}

    monkeypatch.setattr(inspo.loop, "train", fake_trainer)
    out = str(tmp_path / "job")
    assert main(["train", "--out", out, "--set", "xor.variant=plain", "--set", "mne.sampling=iid", "--quiet"]) == 0
    assert [config.env for config in trained] == ["xor", "mne", "bridge"]
    assert trained[0].env_options.variant == "plain" and trained[1].env_options.sampling == "iid"
    assert "xor/c (plain)" in capsys.readouterr().out
    assert main(["train", "--out", out + "2", "--set", "cfcql.alpha=1"]) == 2
    assert "inspo train: error: cfcql.alpha: the main job trains xor, mne, bridge with inspo" in capsys.readouterr().err

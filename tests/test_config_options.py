"""Options on the command line and in Python (SECTION.FIELD, or a section's mapping), and the fields that
became options (`mode`, `eta`, `xor_variant`, `cfcql_alpha`, ...): refused wherever they are given, naming the
option that replaced them, a run folder written with them included."""

import json

import pytest

from inspo.cli import main
from inspo.config import RENAMED_FIELDS, TrainConfig, load_config_file, make_config
from inspo.runfolder import CHECKPOINT, CONFIG, RunFiles, load_checkpoint


def test_a_sections_mapping_is_its_dotted_options():
    dotted = make_config("xor", **{"inspo.mode": "exact", "inspo.eta": 0.5, "xor.variant": "plain"})
    assert make_config("xor", inspo={"mode": "exact", "eta": 0.5}, xor={"variant": "plain"}) == dotted
    assert dotted.inspo.mode == "exact" and dotted.to_overrides()["inspo.eta"] == 0.5
    with pytest.raises(
        ValueError, match="config.inspo.eta: options of 'inspo', but this run's env is 'xor' and its algo 'bc'"
    ):
        make_config("xor", algo="bc", inspo={"eta": 0.5})


def test_the_inspo_section_goes_to_inspo_runs_only():
    """A preset's or a regime's inspo.* options are InSPO's: another algorithm's run has none."""
    assert make_config("mne").inspo.beta_end == 0.0
    assert make_config("mne", algo="omiga").to_dict()["algo_options"] == {"omiga": {"alpha": 10.0, "mixer_hidden": 64}}
    with pytest.raises(ValueError, match="a run of 'omiga' has no InSPO options"):
        assert make_config("mne", algo="omiga").inspo
    inspo_json = make_config("xor").to_dict()
    assert TrainConfig.from_dict({**inspo_json, "algo": "bc"}).to_dict()["algo_options"] == {}


@pytest.mark.parametrize("name", sorted(RENAMED_FIELDS))
def test_every_renamed_field_is_refused_on_the_command_line(name, capsys):
    assert main(["train", "--env", "xor", "--set", f"{name}=1", "--quiet"]) == 2
    assert f"config field {name!r} is now the option {RENAMED_FIELDS[name]!r}" in capsys.readouterr().err


def test_a_renamed_field_in_a_config_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("env: xor\neta: 0.5\n")
    with pytest.raises(ValueError, match=r"run.yaml: config field 'eta' is now the option 'inspo.eta'"):
        load_config_file(path)
    path.write_text("env: xor\ninspo: {eta: 0.5}\n")
    assert make_config(**load_config_file(path)).inspo.eta == 0.5


def test_a_run_folder_written_with_the_flat_fields_is_refused_by_name(tmp_path, capsys):
    """An older version's config.json (InSPO's knobs and the options as flat fields) neither evaluates nor resumes
    silently with other values: both name the field and its option."""
    out = tmp_path / "old"
    args = ["train", "--env", "xor", "--dataset", "d", "--steps", "4", "--out", str(out), "--quiet"]
    args += ["--set", "bc_steps=4", "--set", "hidden=8,8", "--set", "checkpoint_every=2"]
    assert main(args) == 0
    values = json.loads((out / CONFIG).read_text())
    flat = {**{k: v for k, v in values.items() if k != "algo_options"}, **values["algo_options"]["inspo"]}
    (out / CONFIG).write_text(json.dumps(flat))
    payload = load_checkpoint(out / CHECKPOINT)
    files = RunFiles(out, resume=True)
    files.save_checkpoint({**payload, "config": flat})
    files.close()
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    assert "config field 'mode' is now the option 'inspo.mode'" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--steps", "6", "--quiet"]) == 2
    assert "config field 'mode' is now the option 'inspo.mode'" in capsys.readouterr().err


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


def test_building_a_config_imports_no_learner():
    """The options live in inspo.algorithms, below the learners: a config of any algorithm is built and
    checked without importing a learner module (they import the networks, the ops and torch)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from inspo.config import make_config\n"
        "for algo in ('inspo', 'bc', 'omiga', 'cfcql'): make_config('xor', algo=algo).validate()\n"
        "print(sorted(m for m in sys.modules if m.startswith('inspo.learners')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

"""Training on a dataset held in tensors or memory-mapped (config.dataset_storage), SMAX datasets
through their card, and the SMAX preset."""

import json
import shutil

import numpy as np
import pytest
import torch

from inspo.cli import main
from inspo.config import make_config
from inspo.data import DatasetError, MappedTransitions, TransitionStore, load_episode_buffer, save_episode_buffer
from inspo.envs.bridge import Bridge
from inspo.loop import train
from inspo.task import prepare_task
from train_testing import train_until

TINY = dict(
    steps=8,
    batch_size=32,
    bc_steps=10,
    bc_batch_size=64,
    hidden=(8, 8),
    critic_hidden=(8, 8),
    eval_episodes=3,
    eval_every=4,
    log_every=2,
    checkpoint_every=4,
)


def tiny_options(algo):
    return {"omiga.mixer_hidden": 4} if algo == "omiga" else {}


@pytest.fixture(scope="module")
def bridge_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bridge") / "mixed"
    save_episode_buffer(path, *Bridge().generate_dataset("mixed", seed=0))
    return path


def rows(path):
    """The log rows of a run without their wall-clock times."""
    lines = path.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def assert_same_run(first, second):
    """Two run folders with the same scores, logs, losses and final networks."""
    for kind in ("metrics", "eval"):
        if (first / f"{kind}.jsonl").exists() or (second / f"{kind}.jsonl").exists():
            assert rows(first / f"{kind}.jsonl") == rows(second / f"{kind}.jsonl"), kind
    results = [json.loads((d / "results.json").read_text()) for d in (first, second)]
    for key in ("scores", "bc_nll", "transitions"):
        assert results[0].get(key) == results[1].get(key), key
    checkpoints = [torch.load(d / "checkpoint.pt", weights_only=False) for d in (first, second)]

    def tensors(value, name=""):
        if isinstance(value, torch.Tensor):
            yield name, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from tensors(item, f"{name}/{key}")

    pairs = dict(tensors(checkpoints[1]))
    for name, value in tensors(checkpoints[0]):
        if "rng" not in name:
            assert torch.equal(value, pairs[name]), name


def test_mapped_storage_reads_the_files_in_place(bridge_dir):
    run = prepare_task(make_config("bridge", dataset_path=str(bridge_dir), dataset_storage="mapped"))
    assert isinstance(run.store, MappedTransitions)
    assert all(isinstance(array, np.memmap) for array in run.store.arrays.values())
    in_memory = prepare_task(make_config("bridge", dataset_path=str(bridge_dir)))
    assert isinstance(in_memory.store, TransitionStore) and len(in_memory.store) == len(run.store)


@pytest.mark.parametrize("algo,mode", [("inspo", "fused"), ("inspo", "exact"), ("omiga", "fused"), ("bc", "fused")])
def test_mapped_storage_trains_bit_identically(bridge_dir, tmp_path, algo, mode):
    for storage in ("memory", "mapped"):
        config = make_config(
            "bridge",
            dataset_path=str(bridge_dir),
            dataset_storage=storage,
            algo=algo,
            **TINY,
            **tiny_options(algo),
            **({"inspo.mode": mode} if algo == "inspo" else {}),
        )
        train(config, out_dir=tmp_path / storage, progress=False)
    assert_same_run(tmp_path / "memory", tmp_path / "mapped")


def test_generated_datasets_train_the_same_in_either_storage(tmp_path):
    for storage in ("memory", "mapped"):
        config = make_config("xor", dataset="d", dataset_storage=storage, **TINY)
        train(config, out_dir=tmp_path / storage, progress=False)
    assert_same_run(tmp_path / "memory", tmp_path / "mapped")


@pytest.mark.parametrize("algo", ["inspo", "omiga"])
def test_a_mapped_run_resumes_into_the_uninterrupted_in_memory_run(bridge_dir, tmp_path, algo):
    def config(storage):
        return make_config(
            "bridge", dataset_path=str(bridge_dir), dataset_storage=storage, algo=algo, **TINY, **tiny_options(algo)
        )

    train(config("memory"), out_dir=tmp_path / "whole", progress=False)

    train_until(train, config("mapped"), tmp_path / "cut", 6)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 4
    train(config("mapped"), out_dir=tmp_path / "cut", resume=True, progress=False)
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_dataset_storage_is_validated():
    with pytest.raises(ValueError, match="config.dataset_storage must be one of"):
        make_config("xor", dataset_storage="disk")


def test_the_smax_preset():
    config = make_config("smax:3m")  # validating the name needs no jaxmarl
    assert (config.dataset, config.dataset_seed) == ("expert", 0)  # `inspo data make` uses data seed 0
    assert (
        config.steps,
        config.inspo.alpha,
        config.inspo.beta,
        make_config("smax:3m", algo="omiga").algo_options.alpha,
        config.share_parameters,
    ) == (
        1500,
        0.1,
        0.01,
        1.0,
        True,
    )
    assert make_config("smax:2s3z", seed=3).dataset_seed == 0
    assert make_config("xor").dataset_seed is None and make_config("bridge").dataset == "optimal"


# ---- SMAX datasets given as dataset_path (skipped without jaxmarl) ----


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    pytest.importorskip("jaxmarl")
    import smax_testing  # noqa: F401  (fast compiles)
    from inspo.smax.tiers import DataConfig, make_dataset

    root = tmp_path_factory.mktemp("smax")
    return make_dataset(DataConfig(map_name="3m", tier="scripted", episodes=12, root=root), log=lambda m: None)


# 16 evaluation battles: the batch size of tests/test_smax_env.py, so the jitted step compiles once per session
SMAX_TINY = [
    "--steps",
    "3",
    "--set",
    "bc_steps=3",
    "--set",
    "batch_size=16",
    "--set",
    "hidden=8,8",
    "--set",
    "critic_hidden=8,8",
    "--set",
    "eval_episodes=16",
    "--set",
    "log_every=1",
    "--quiet",
]


def test_cli_trains_on_a_smax_dataset_directory_memory_mapped(scripted, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--env",
        "smax:3m",
        "--dataset-path",
        str(scripted),
        "--set",
        "dataset_storage=mapped",
        "--out",
        str(out),
        *SMAX_TINY,
    ]
    assert main(argv) == 0
    assert "smax:3m/scripted" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    card = json.loads((scripted / "meta.json").read_text())["card"]
    assert results["config"]["dataset_storage"] == "mapped" and results["transitions"] == card["transitions"]
    assert [row["step"] for row in rows(out / "metrics.jsonl")] == [1, 2, 3]
    assert set(results["scores"]) >= {"greedy_win_rate", "stochastic_win_rate"}


@pytest.mark.parametrize("storage", ["memory", "mapped"])
def test_a_truncated_file_of_a_carded_dataset_is_an_error(scripted, tmp_path, storage):
    copy = tmp_path / "copy"
    shutil.copytree(scripted, copy)
    data = (copy / "obs.npy").read_bytes()
    (copy / "obs.npy").write_bytes(data[: len(data) // 2])
    config = make_config("smax:3m", dataset_path=str(copy), dataset_storage=storage)
    with pytest.raises(DatasetError, match="obs.npy"):
        prepare_task(config)


@pytest.mark.parametrize("storage", ["memory", "mapped"])
def test_a_dataset_cut_short_is_an_error_not_a_smaller_dataset(scripted, tmp_path, storage, capsys):
    """Every array cut to 10 of the 12 episodes, each a valid .npy: a plain episode-buffer reader
    sees a smaller dataset; training checks the card and refuses it, naming the file."""
    cut = tmp_path / "cut"
    shutil.copytree(scripted, cut)
    for path in cut.glob("*.npy"):
        np.save(path, np.load(path)[:10])
    meta = json.loads((cut / "meta.json").read_text())
    meta.update(episodes_in_buffer=10, buffer_size=10)
    (cut / "meta.json").write_text(json.dumps(meta))
    assert load_episode_buffer(cut)[0]["obs"].shape[0] == 10  # loads, without the card
    config = make_config("smax:3m", dataset_path=str(cut), dataset_storage=storage)
    with pytest.raises(DatasetError, match=r"\.npy has \d+ bytes, the dataset card says"):
        prepare_task(config)
    argv = [
        "train",
        "--env",
        "smax:3m",
        "--dataset-path",
        str(cut),
        "--set",
        f"dataset_storage={storage}",
        "--out",
        str(tmp_path / "run"),
        *SMAX_TINY,
    ]
    assert main(argv) == 2
    assert "the dataset card says" in capsys.readouterr().err

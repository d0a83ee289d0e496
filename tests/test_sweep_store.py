"""The summary store: a committed summary is reused, under its key only; a torn, edited or foreign summary is
refused by name; a sweep whose runs are all summarized needs neither Ray nor their run folders."""

import io
import json

import pytest

from inspo.config import make_config
from inspo.sweep.runner import run_sweep
from inspo.sweep.spec import Run
from inspo.sweep.store import SummaryError, SummaryStore, read_store, read_summary

FILES = {
    "results.json": json.dumps(dict(config={"seed": 0}, scores={"expected_payoff": 0.9}, steps=20, seconds=1.5)),
    "eval.jsonl": json.dumps(dict(step=10, expected_payoff=0.5))
    + "\n"
    + json.dumps(dict(step=20, expected_payoff=0.9)),
    "final_eval.json": json.dumps(dict(greedy_return=[1.0, 0.0], episodes=2)),
}
COST = dict(cpu_seconds=12.5, wall_seconds=13.0, runs_in_process=1, threads=1, cpu="a CPU", cpus=2)


def make_run(tmp_path, name="xor/fused", seed=0, **fields) -> Run:
    config = make_config("xor", steps=20, seed=seed, **fields)
    return Run(name, config, tmp_path / "runs" / name / f"seed{seed}")


def make_store(tmp_path, commit="abc", dataset="d1") -> SummaryStore:
    return SummaryStore(tmp_path / "store", commit, lambda config: dataset)


def test_a_recorded_summary_is_reused_under_its_key_only(tmp_path):
    run = make_run(tmp_path)
    store = make_store(tmp_path)
    assert store.finished(run, "v1") is None
    written = store.record(run, "v1", FILES, COST)
    found = store.finished(run, "v1")
    assert found == written and found["results"]["scores"] == {"expected_payoff": 0.9}
    assert [row["step"] for row in found["curve"]] == [10, 20] and found["final"]["episodes"] == 2
    assert found["cost"]["cpu_seconds"] == 12.5 and found["key"]["commit"] == "abc"
    assert "config" not in found["results"]  # the key holds it
    # another config, code version, commit or dataset: not this run's result
    assert store.finished(make_run(tmp_path, **{"inspo.eta": 0.7}), "v1") is None
    assert store.finished(run, "v2") is None
    assert make_store(tmp_path, commit="def").finished(run, "v1") is None
    assert make_store(tmp_path, dataset="d2").finished(run, "v1") is None


def test_a_torn_edited_or_foreign_summary_is_refused_by_name(tmp_path):
    run = make_run(tmp_path)
    store = make_store(tmp_path)
    store.record(run, "v1", FILES, COST)
    path = store.path(run)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # torn: a write cut short
    with pytest.raises(SummaryError, match=f"{path}: not a complete summary"):
        store.finished(run, "v1")
    edited = json.loads(text)
    edited["results"]["scores"]["expected_payoff"] = 1.0  # a hand edit
    path.write_text(json.dumps(edited))
    with pytest.raises(SummaryError, match="does not match its sha256"):
        read_summary(path)
    path.write_text(json.dumps(dict(schema="something else")))
    with pytest.raises(SummaryError, match="not a run summary"):
        read_store(store.root)
    # a summary filed under another run's name
    path.write_text(text)
    other = make_run(tmp_path, name="xor/exact")
    store.path(other).parent.mkdir(parents=True)
    store.path(other).write_text(text)
    with pytest.raises(SummaryError, match="filed as 'xor/exact'"):
        read_store(store.root)


def test_read_store_skips_what_a_killed_writer_left_and_refuses_stray_files(tmp_path):
    run = make_run(tmp_path)
    store = make_store(tmp_path)
    store.record(run, "v1", FILES, COST)
    (store.path(run).parent / ".seed1.json.x1y2.tmp").write_text("{")  # atomic_write's temporary file
    assert list(read_store(store.root)) == [("xor/fused", 0)]
    (store.root / "notes.txt").write_text("hello")
    with pytest.raises(SummaryError, match="notes.txt: not a summary file"):
        read_store(store.root)


def test_a_sweep_of_summarized_runs_trains_nothing_and_needs_no_run_folder(tmp_path, monkeypatch):
    import inspo.sweep.runner as runner

    runs = [make_run(tmp_path, seed=s) for s in (0, 1)]
    store = make_store(tmp_path)
    version = runner.code_version()
    for run in runs:
        store.record(run, version, FILES, COST)
    assert not (tmp_path / "runs").exists()

    def no_ray(*args, **kwargs):
        raise AssertionError("a sweep of summarized runs started Ray")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    outcome = run_sweep(runs, store=store, stream=io.StringIO())
    assert outcome.reused == 2 and not outcome.failures
    assert outcome.results[("xor/fused", 1)]["scores"] == {"expected_payoff": 0.9}

"""The SMAX protocol's rules on made-up numbers: the budget rule on fake learning curves, the selection
rule on fake tuning scores, and the whole three-phase run on a fake sweep runner (every run's files
written from formulas), down to the report table and marl-eval's JSON."""

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("jaxmarl")
pytest.importorskip("rliable")
from experiments.smax import protocol  # noqa: E402
from experiments.smax.results import GridConfig  # noqa: E402
from inspo.sweep.store import checksum, read_store  # noqa: E402


def test_flat_from_is_the_first_step_of_the_final_band():
    steps = [100, 200, 300, 400, 500]
    assert protocol.flat_from(steps, [0.1, 0.5, 0.98, 1.02, 1.0], tolerance=0.05) == 300
    # a late dip out of the band moves the budget after it, whatever came before
    assert protocol.flat_from(steps, [1.0, 1.0, 1.0, 0.8, 1.0], tolerance=0.05) == 500
    assert protocol.flat_from(steps, [1.0, 1.0, 1.0, 1.0, 1.0], tolerance=0.0) == 100


def test_budget_is_the_latest_flattening_over_methods_on_the_seed_iqm():
    steps = [100, 200, 300, 400]
    fast = np.array([[0.5, 1.0, 1.0, 1.0]] * 4)  # flat from 200 on every seed
    # three seeds flat from 300; one wild seed the IQM trims away (its mean would keep the curve moving)
    slow = np.array([[0.0, 0.4, 1.0, 1.0]] * 3 + [[0.0, 0.4, 9.0, 1.0]])
    budget, per_curve = protocol.choose_budget({"a": (steps, fast), "b": (steps, slow)}, tolerance=0.05)
    assert per_curve == {"a": 200, "b": 300} and budget == 300
    with pytest.raises(ValueError, match="scores must be"):
        protocol.choose_budget({"a": (steps, fast[:, :3])}, tolerance=0.05)


def test_selection_takes_the_highest_iqm_and_breaks_ties_toward_the_middle():
    # 0.3 has the best mean (one lucky seed) but the lower IQM
    value, point = protocol.select_value({0.03: [0.5, 0.6, 0.6, 0.7], 0.3: [0.1, 0.2, 0.3, 5.0]}, middle=0.1)
    assert value == 0.03 and point[0.03] == pytest.approx(0.6) and point[0.3] == pytest.approx(0.25)
    tied = {0.03: [1.0, 1.0], 0.1: [1.0, 1.0], 0.3: [1.0, 1.0]}
    assert protocol.select_value(tied, middle=0.1)[0] == 0.1
    assert protocol.select_value({0.01: [1.0], 1.0: [1.0]}, middle=0.1)[0] == 0.01  # equally far: the smaller
    assert protocol.tuning_score(dict(greedy_return=[1.0, 2.0], stochastic_return=[0.0, 1.0])) == 1.0


def curve_value(method: str, step: int) -> float:
    """The fake learning curve of every curve run: BC flat from 200, the others from 300."""
    flat = 200 if method == "bc" else 300
    return 1.0 if step >= flat else step / 1000


BEST = {"inspo-fused": 0.3, "omiga": 0.3, "cfcql": 5.0}  # the value each method's fake tuning favours


def fake_final(run, episodes: int) -> dict:
    """The final evaluation a run 'scores': higher when its temperature is the method's best one."""
    config = run.config
    method = run.name.split("/")[3]
    field = protocol.TEMPERATURES[method][0] if protocol.TEMPERATURES[method] else None
    good = field is None or config.to_overrides()[field] == BEST[method]
    wins = [1.0] * (episodes // 2) + [float(good)] * (episodes - episodes // 2)
    return dict(
        step=config.steps if config.algo != "bc" else config.bc_steps,
        episodes=episodes,
        seed=10_000 + config.seed,
        greedy_win_rate=wins,
        stochastic_win_rate=[w * 0.5 for w in wins],
        greedy_return=[1.0 + w + 0.01 * config.seed for w in wins],
        stochastic_return=[0.5 + w for w in wins],
    )


class FakeRunner:
    """Stands in for inspo.sweep.runner.run_sweep: summarizes each run not in the store from formulas."""

    def __init__(self):
        self.trained, self.asked = [], []

    def __call__(self, runs, store, **options):
        from inspo.sweep.runner import SweepOutcome

        self.asked.append(list(runs))
        for run in runs:
            if store.finished(run, "fake-version") is not None:
                continue
            self.trained.append(run)
            config = run.config
            steps = config.bc_steps if config.algo == "bc" else config.steps
            method = run.name.split("/")[3]
            every = config.eval_every or steps
            rows = [
                dict(step=s, stochastic_return=curve_value(method, s), greedy_return=2.0)
                for s in range(every, steps + 1, every)
            ]
            files = {
                "results.json": json.dumps(dict(steps=steps, seconds=1.0)),
                "eval.jsonl": "".join(json.dumps(row) + "\n" for row in rows),
            }
            if run.finish is not None:
                assert run.finish[0] == "experiments.smax.results:write_final_eval"
                files["final_eval.json"] = json.dumps(fake_final(run, dict(run.finish[1])["episodes"]))
            store.record(run, "fake-version", files, dict(cpu_seconds=36.0, wall_seconds=40.0))
        return SweepOutcome()


def fake_dataset(directory, digest: str) -> None:
    directory.mkdir(parents=True)
    card = dict(files={"obs": dict(bytes=1, sha256=digest)}, return_mean=1.5, win_rate=0.5)
    (directory / "meta.json").write_text(json.dumps(dict(card=card)))


@pytest.fixture
def fake_protocol(tmp_path, monkeypatch):
    import contextlib

    import inspo.stats as stats
    import inspo.sweep.runner as runner

    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 50)  # the intervals' values are not what is tested here
    fake = FakeRunner()
    monkeypatch.setattr(runner, "run_sweep", fake)
    monkeypatch.setattr(runner, "ray_session", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(protocol, "check_datasets", lambda *a: None)  # the fake datasets have no arrays
    data = tmp_path / "data"
    for tier in ("expert", "medium"):
        fake_dataset(data / "3m" / "seed0" / tier, digest=tier * 8)
    scale = protocol.Scale(
        "test",
        max_steps=500,
        eval_every=100,
        curve_episodes=4,
        tuning_seeds=(100, 101),
        report_seeds=(0, 1, 2),
        final_episodes=8,
        tolerance=0.05,
        mu_steps=10,
        tiers=("expert", "medium", "mixed"),  # mixed has no dataset: skipped
    )
    setup = protocol.Protocol(
        maps=("3m",),
        methods=("inspo-fused", "cfcql", "omiga", "bc"),
        scale=scale,
        out=tmp_path / "runs",
        grid=GridConfig(data_root=data),
        datasets={
            "3m": {
                tier: dict(sha256=dataset_hash(tier), return_mean=1.5, win_rate=0.5) for tier in ("expert", "medium")
            }
        },
    )
    return setup, fake


def test_protocol_phases_budget_selection_and_report(fake_protocol):
    setup, fake = fake_protocol
    logged = []
    decisions = protocol.run_protocol(setup, log=logged.append, commit="c0ffee")
    assert any("skip 3m/mixed" in line for line in logged)
    decided = decisions["maps"]["3m"]
    assert decided["tiers"] == ["expert", "medium"]
    # curves phase: the middle temperature, tuning seeds, max_steps with periodic evaluation
    curves = [run for run in fake.asked[0]]
    assert {run.seed for run in curves} == {100, 101} and len(curves) == 2 * 4 * 2
    fused = next(run.config for run in curves if "inspo-fused" in run.name)
    assert (fused.steps, fused.eval_every, fused.eval_episodes, fused.inspo.alpha, fused.bc_steps) == (
        500,
        100,
        4,
        0.1,
        10,
    )
    bc = next(run.config for run in curves if run.name.endswith("/bc"))
    assert (bc.algo, bc.bc_steps) == ("bc", 500)
    # budget: the latest flattening (300, the RL methods) and per curve
    assert decided["budget"] == 300 and decided["flattened"] and not decided["capped"]
    assert decided["per_curve"]["expert/bc"] == 200 and decided["per_curve"]["medium/omiga"] == 300
    # tune phase: three values per temperature method, one BC run, at the budget, on the tuning seeds
    tune = fake.asked[1]
    assert len(tune) == 2 * (3 + 3 + 3 + 1) * 2
    assert {run.config.steps for run in tune if run.config.algo != "bc"} == {300}
    assert {run.config.algo_options.alpha for run in tune if run.config.algo == "omiga"} == {0.3, 1.0, 3.0}
    assert all(run.config.eval_every == 0 and run.seed in (100, 101) for run in tune)
    # selection: each method's favoured value (BC has none)
    selected = decided["selected"]
    assert selected["expert/inspo-fused"]["value"] == 0.3 and selected["medium/cfcql"]["value"] == 5.0
    assert selected["expert/omiga"]["value"] == 0.3 and selected["expert/bc"]["value"] is None
    # report phase: the selected values on the fresh seeds, at the budget, final evaluation of 8 battles
    report = fake.asked[2]
    assert {run.seed for run in report} == {0, 1, 2}
    assert all(run.config.algo_options.alpha == 0.3 for run in report if run.config.algo == "omiga")
    assert all(dict(run.finish[1])["episodes"] == 8 for run in report)
    assert {(run.config.bc_steps if run.config.algo == "bc" else run.config.steps) for run in report} == {300}
    # every run is summarized in the store, under the commit and its dataset's hash
    summaries = read_store(setup.store_root)
    assert len(summaries) == len(curves) + len(tune) + len(report)
    assert {s["key"]["commit"] for s in summaries.values()} == {"c0ffee"}
    assert decisions["datasets"]["3m"] == {"expert": dataset_hash("expert"), "medium": dataset_hash("medium")}
    # outputs: marl-eval's JSON of the report runs (per-episode finals), the table with IQM [CI] and mean ± std
    marl = json.loads((setup.out / "marl_eval.json").read_text())
    assert sorted(marl["smax"]["3m-expert"]["omiga"]) == ["run_0", "run_1", "run_2"]
    assert len(marl["smax"]["3m-expert"]["omiga"]["run_0"]["absolute_metrics"]["greedy_win_rate"]) == 8
    text = (setup.out / "protocol.md").read_text()
    assert protocol.TINY_LABEL not in text and "`c0ffee`" in text
    assert (setup.out / "curves_3m.png").is_file() and (setup.out / "report_3m.png").is_file()
    assert "![SMAX report 3m](results/smax_protocol_test_3m_report.png)" in text
    greedy_return = text[text.index("Final greedy return") : text.index("Final stochastic return")]
    row = next(line for line in greedy_return.splitlines() if line.startswith("| 3m | expert"))
    # BC's greedy return per seed: 2.0, 2.01, 2.02 -> IQM of three = their middle-weighted mean, std 0.01
    assert "2.01 ± 0.01" in row.split("|")[-2] and row.split("|")[3].strip() == "1.50"  # the dataset's return
    assert "| 3m | all tiers |" in greedy_return
    assert "P(InSPO > OMIGA)" in text
    # the scores behind each selection, per tuned tier (BC has none)
    tuning_rows = [line for line in text.splitlines() if line.startswith("| 3m | OMIGA | ")]
    assert [row.split(" | ")[2] for row in tuning_rows] == ["expert", "medium"]
    assert tuning_rows[0].startswith("| 3m | OMIGA | expert | omiga.alpha | 0.3: ") and tuning_rows[0].endswith(
        "| 0.3 |"
    )
    assert not any(line.startswith("| 3m | BC | ") for line in text.splitlines())
    assert "| 3m | report | 24 | 0.24 | 0.27 |" in text  # 4 methods x 2 tiers x 3 seeds at 36 CPU-s each
    # resumable: a second invocation trains nothing
    trained = len(fake.trained)
    assert protocol.run_protocol(setup, log=logged.append, commit="c0ffee") == decisions
    assert len(fake.trained) == trained
    # another commit or another dataset version is not reused
    protocol.run_protocol(setup, log=logged.append, commit="beef")
    assert len(fake.trained) == 2 * trained


def dataset_hash(tier: str) -> str:
    import hashlib

    return hashlib.sha256(f"obs\0{tier * 8}\n".encode()).hexdigest()


def test_the_report_regenerates_byte_for_byte_from_the_summaries_alone(fake_protocol, tmp_path):
    import shutil

    setup, _ = fake_protocol
    protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee")
    # another machine: only the committed summaries, no run folder, no dataset
    store = tmp_path / "committed"
    shutil.copytree(setup.store_root, store)
    outputs = ("protocol.md", "protocol.json", "marl_eval.json", "curves_3m.png", "report_3m.png")
    first = {name: (setup.out / name).read_bytes() for name in outputs}
    again = dataclasses.replace(
        setup, out=tmp_path / "again", store=store, grid=GridConfig(data_root=tmp_path / "none")
    )
    protocol.write_outputs(again)
    assert {name: (again.out / name).read_bytes() for name in outputs} == first


def test_tuning_on_two_tiers_reuses_each_choice_on_the_others(fake_protocol):
    setup, fake = fake_protocol
    setup = dataclasses.replace(
        setup, scale=dataclasses.replace(setup.scale, tune_tiers=("medium",), tune_seeds=(100,), budget_cap=200)
    )
    decisions = protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee")
    tune = fake.asked[1]
    assert {run.name.split("/")[2] for run in tune} == {"medium"} and {run.seed for run in tune} == {100}
    decided = decisions["maps"]["3m"]
    assert decided["budget"] == 200 and decided["curves_budget"] == 300 and decided["capped"]
    assert decided["selected"]["expert/omiga"]["value"] == 0.3 and decided["selected"]["expert/omiga"]["tuned_on"] == [
        "medium"
    ]
    assert {run.config.steps for run in fake.asked[2] if run.config.algo != "bc"} == {200}
    # one tuning row per method: the choice made on medium stands for every tier
    text = (setup.out / "protocol.md").read_text()
    assert [line.split(" | ")[2] for line in text.splitlines() if line.startswith("| 3m | CFCQL | ")] == ["medium"]


def test_a_run_on_another_dataset_than_the_campaigns_is_refused(fake_protocol):
    setup, _ = fake_protocol
    setup.datasets["3m"]["medium"]["sha256"] = "f" * 64
    with pytest.raises(ValueError, match="the campaign's 3m/medium is ffff"):
        protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee")


def test_a_report_never_mixes_dataset_versions(fake_protocol):
    setup, _ = fake_protocol
    protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee")
    path = setup.store_root / "report" / "3m" / "expert" / "bc" / "seed0.json"
    summary = json.loads(path.read_text())
    summary["key"]["dataset"] = "another"
    summary["sha256"] = checksum(summary)
    path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="two dataset versions"):
        protocol.write_outputs(setup)


def test_report_reads_the_final_policy_never_the_best_checkpoint(fake_protocol):
    setup, _ = fake_protocol
    final = dict(greedy_win_rate=[0.0, 0.0], greedy_return=[0.5, 0.5], stochastic_return=[0.1, 0.1])
    final["stochastic_win_rate"] = [0.0, 0.0]
    summary = dict(curve=[dict(step=100, greedy_win_rate=1.0)], final=final)  # best midway, bad at the end
    summaries = {(protocol.run_name("report", "3m", "expert", "bc"), 0): summary}
    finals = protocol.report_finals(setup, summaries, "3m", "expert", "bc")
    assert protocol.seed_means(finals, "greedy_win_rate") == [0.0]


def test_compute_plan_prices_every_run_of_the_full_grid():
    from experiments.smax import plan

    measured = dict(
        map="3m",
        iteration_seconds={f"{m}/3": 0.01 for m in protocol.METHODS},
        final_eval_warm_seconds=2.0,
        rollout_seconds_per_episode=0.001,
    )
    cost = plan.protocol_cost(measured, budget=5000, mappo={"3m": 3.0})
    assert cost["groups"] == dict(curves=5 * 4, tune=(4 * 3 + 1) * 4, report=5 * 4)
    full = protocol.SCALES["full"]
    battle = 2.0 / (2 * full.final_episodes)
    bc_curve = 0.01 * full.max_steps + (full.max_steps // full.eval_every) * 2 * full.curve_episodes * battle * 3
    fit = 0.01 * full.mu_steps  # InSPO's mu, fitted by BC steps
    assert cost["longest"]["curves"] == pytest.approx(bc_curve + fit)  # InSPO: BC's cost plus mu's fit
    report_inspo = (0.01 * 5000 + fit) * 5 / 3 + 5 * 2.0
    assert cost["longest"]["report"] == pytest.approx(report_inspo)
    assert cost["dataset"] == pytest.approx(244 * 3.0 + 4 * 5000 * 0.001)
    # more cores never cost more wall time, and never less than the longest group of each phase
    walls = [plan.wall_seconds([cost], n) for n in (1, 16, 1024)]
    assert walls[0] > walls[1] > walls[2] >= cost["dataset"] + sum(cost["longest"].values()) - 1e-9
    # two maps side by side: as long as one on a big cluster, twice one on a single core
    assert plan.wall_seconds([cost, cost], 1024) == pytest.approx(walls[2])
    assert plan.wall_seconds([cost, cost], 1) == pytest.approx(2 * walls[0])


def campaign_rows(per_iteration: float) -> list[dict]:
    return [
        dict(
            map=name,
            iteration_seconds={f"{m}/3": per_iteration for m in protocol.METHODS},
            final_eval_warm_seconds=2.0,
            rollout_seconds_per_episode=0.001,
        )
        for name in ("3m", "2s3z", "5m_vs_6m")
    ]


def test_a_campaign_is_cut_in_order_until_it_fits():
    from experiments.smax import plan

    scale = protocol.SCALES["campaign"]
    mappo = {"3m": 1.0, "2s3z": 1.0, "5m_vs_6m": 1.0}
    maps, methods = ["2s3z", "5m_vs_6m", "3m"], ["inspo-fused", "cfcql", "omiga", "bc", "inspo-exact"]
    roomy = plan.fit_campaign(campaign_rows(0.001), mappo, scale, maps, methods, 5000, limit_hours=100)
    assert roomy["cuts"] == {} and roomy["maps"] == maps and roomy["methods"] == methods and roomy["steps"] == []
    tight = plan.fit_campaign(campaign_rows(0.1), mappo, scale, maps, methods, 10_000, limit_hours=16)
    # everything optional went first, then the tuning grid, then the budget; never a required map or method
    assert tight["maps"] == ["2s3z", "5m_vs_6m"] and tight["methods"] == ["inspo-fused", "cfcql", "omiga", "bc"]
    assert tight["cuts"]["tune_tiers"] == ["medium-replay", "mixed"] and tight["cuts"]["tune_seeds"] == [100]
    assert 0 < tight["cuts"]["budget_cap"] < 10_000 and tight["cuts"]["budget_cap"] % scale.eval_every == 0
    assert tight["hours"] <= 16 and [step.split(":")[0].split(" ")[0] for step in tight["steps"]] == [
        "dropped",
        "dropped",
        "tuned",
        "one",
        "budget",
    ]
    # one more eval interval of budget would not fit
    fitted = dataclasses.replace(scale, tune_tiers=("medium-replay", "mixed"), tune_seeds=(100,))
    over = tight["cuts"]["budget_cap"] + scale.eval_every
    costs = [plan.protocol_cost(row, over, mappo, fitted, tight["methods"]) for row in campaign_rows(0.1)[1:]]
    assert plan.total_hours(costs) > 16
    with pytest.raises(ValueError, match="no budget fits"):
        plan.fit_campaign(campaign_rows(10.0), mappo, scale, maps, methods, 10_000, limit_hours=16)


def test_a_campaign_can_stop_after_its_curves(fake_protocol):
    setup, fake = fake_protocol
    decisions = protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee", stop_after="curves")
    assert len(fake.asked) == 1 and decisions["maps"]["3m"]["selected"] is None
    assert "tuning" in (setup.out / "protocol.md").read_text()


def test_a_campaign_in_progress_reports_what_is_summarized(fake_protocol):
    setup, _ = fake_protocol
    protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee", stop_after="curves")
    next(setup.store_root.rglob("seed101.json")).unlink()  # one curve run still training
    decisions = protocol.write_outputs(setup)
    assert decisions["maps"]["3m"]["budget"] is None and decisions["maps"]["3m"]["curve_runs"] == 15
    text = (setup.out / "protocol.md").read_text()
    assert "| 3m | – | curves running: 15 of 16 runs summarized |" in text
    assert "No report run has finished yet" in text and "Final greedy win rate" not in text


def test_a_campaigns_cost_stands_beside_its_plans_price_in_smax_md(fake_protocol, tmp_path):
    from experiments.smax import plan

    setup, _ = fake_protocol
    protocol.run_protocol(setup, log=lambda line: None, commit="c0ffee")
    smax_md = tmp_path / "SMAX.md"
    smax_md.write_text("# SMAX\n")
    with pytest.raises(ValueError, match="no campaign plan"):  # a protocol without a plan.json has no price
        plan.write_smax_md(setup, smax_md)
    row = dict(campaign_rows(0.01)[0], map="3m")  # 10 ms an iteration for every method
    plan_json = dict(maps=[row], mappo={"3m": 1.0})
    (setup.store_root.parent / "plan.json").write_text(json.dumps(plan_json))
    decisions = protocol.write_outputs(setup)
    text = (setup.out / "protocol.md").read_text()
    assert "[The campaign's cost](SMAX.md#the-campaigns-cost)" in text and "| runs summarized |" not in text
    with pytest.raises(ValueError, match="has no generated region 'smax-campaign-cost'"):
        plan.write_smax_md(setup, smax_md)
    smax_md.write_text("# SMAX\n\n<!-- generated: smax-campaign-cost -->\n<!-- end generated: smax-campaign-cost -->\n")
    plan.write_smax_md(setup, smax_md)
    cost = smax_md.read_text()
    assert "| map | phase | runs planned | runs summarized | CPU-hours planned | CPU-hours measured |" in cost
    # planned: every tier of the scale (mixed has no dataset here, so none of its runs was summarized);
    # measured: 36 CPU-seconds a run (FakeRunner)
    assert f"| 3m | curves | {3 * 4 * 2} | 16 | " in cost and f"| {16 * 36 / 3600:.2f} |" in cost
    budget = decisions["maps"]["3m"]["budget"]
    price = plan.protocol_cost(row, budget, plan_json["mappo"], setup.scale, list(setup.methods))["phases"]
    assert f"| {price['report'] / 3600:.2f} |" in cost
    first = smax_md.read_bytes()
    protocol.write_outputs(setup)  # regenerated from the same summaries and plan: the same bytes
    plan.write_smax_md(setup, smax_md)
    assert smax_md.read_bytes() == first


def test_an_amendment_redoes_a_methods_tune_and_report_from_its_own_store(fake_protocol, tmp_path, monkeypatch):
    import shutil

    setup, _ = fake_protocol
    monkeypatch.setitem(protocol.SCALES, "test", setup.scale)
    folder = tmp_path / "campaign"
    parent = dataclasses.replace(setup, store=folder / "summaries")
    # the campaign, run with CFCQL's first grid; its tune and report runs of CFCQL are superseded
    with monkeypatch.context() as first_grid:
        first_grid.setitem(protocol.TEMPERATURES, "cfcql", ("cfcql.alpha", (0.01, 0.1, 1.0)))
        first = protocol.run_protocol(parent, log=lambda line: None, commit="c0ffee")
    budget = first["maps"]["3m"]["budget"]
    # the amendment: CFCQL's tune and report over the current grid, from another commit, in its own store
    amending = dataclasses.replace(setup, methods=("cfcql",), store=folder / "cfcql" / "summaries")
    protocol.run_protocol(amending, log=lambda line: None, commit="a3e7")
    shutil.rmtree(amending.store_root / "curves")  # the amendment runs no curves: it takes the campaign's budget
    settings = dict(tag="t1", maps=["3m"], scale="test", cuts={}, overrides={})
    grid = [float(v) for v in protocol.TEMPERATURES["cfcql"][1]]
    amendment = dict(settings, tag="t1-cfcql", methods=["cfcql"], amends="../campaign.json", budgets={"3m": budget})
    (folder / "cfcql" / "campaign.json").write_text(json.dumps(dict(amendment, temperatures={"cfcql": grid})))
    campaign = folder / "campaign.json"
    campaign.write_text(
        json.dumps(dict(settings, methods=["inspo-fused", "omiga", "bc"], amended_by="cfcql/campaign.json"))
    )

    merged = protocol.campaign_protocol(campaign, GridConfig(data_root=tmp_path / "data"), tmp_path / "out")
    assert merged.methods == ("inspo-fused", "cfcql", "omiga", "bc") and merged.amendment.tag == "t1-cfcql"
    decisions = protocol.write_outputs(merged)
    summaries = protocol.read_summaries(merged)
    cfcql = {name: s["key"]["commit"] for (name, _), s in summaries.items() if name.split("/")[3] == "cfcql"}
    assert {c for n, c in cfcql.items() if not n.startswith("curves/")} == {"a3e7"}  # tune and report: amended
    assert {c for n, c in cfcql.items() if n.startswith("curves/")} == {"c0ffee"}  # curves: the campaign's
    assert decisions["commits"] == ["a3e7", "c0ffee"]
    assert decisions["maps"]["3m"]["selected"]["expert/cfcql"]["value"] == 5.0  # the amendment's grid, selected
    assert set(decisions["amendment"]["first_grid"]["3m"]["cfcql"]) == {"0.01", "0.1", "1"}
    text = (merged.out / "protocol.md").read_text()
    assert "tag `t1-cfcql`" in text and "| 3m | CFCQL | 0.01: " in text and "6 runs: " in text  # 2 tiers x 3 seeds
    assert len(protocol.superseded_summaries(merged)) == 2 * 3 * 2 + 2 * 3  # first grid's tune + report runs
    first_text = text
    protocol.write_outputs(merged)
    assert (merged.out / "protocol.md").read_text() == first_text  # byte-identical when regenerated
    # the cost table: the amendment's runs in rows of their own, priced as the plan priced CFCQL
    from experiments.smax import plan

    (folder / "plan.json").write_text(json.dumps(dict(maps=[dict(campaign_rows(0.01)[0], map="3m")], mappo={"3m": 1})))
    smax_md = tmp_path / "SMAX.md"
    smax_md.write_text("<!-- generated: smax-campaign-cost -->\n<!-- end generated: smax-campaign-cost -->\n")
    plan.write_smax_md(merged, smax_md)
    cost = smax_md.read_text()
    # planned: every tier of the scale (mixed has no dataset); 36 CPU-seconds a run
    assert f"| 3m | tune, amendment (CFCQL) | {3 * 3 * 2} | 12 | " in cost and f"| {12 * 36 / 3600:.2f} |" in cost
    assert f"| 3m | report, amendment (CFCQL) | {3 * 3} | 6 | " in cost

    # while the amendment still tunes, the other methods' selections stand and CFCQL's reads "tuning"
    tuning = next((amending.store_root / "tune").rglob("seed100.json"))
    kept = tuning.read_bytes()
    tuning.unlink()
    decisions = protocol.write_outputs(merged)
    assert "expert/cfcql" not in decisions["maps"]["3m"]["selected"]
    assert "; tuning |" in (merged.out / "protocol.md").read_text() and "omiga.alpha 0.3" in text
    tuning.write_bytes(kept)

    def refused(match):
        with pytest.raises(ValueError, match=match):
            protocol.write_outputs(protocol.campaign_protocol(campaign, GridConfig(), tmp_path / "out"))

    # a run the amendment does not redo, found in its store, is refused by name
    foreign = amending.store_root / "report" / "3m" / "expert" / "omiga"
    shutil.copytree(parent.store_root / "report" / "3m" / "expert" / "omiga", foreign)
    refused("report/3m/expert/omiga is not a tune or report run of cfcql")
    shutil.rmtree(foreign)
    # its runs must train at the campaign's budget
    (folder / "cfcql" / "campaign.json").write_text(
        json.dumps(dict(amendment, temperatures={"cfcql": grid}, budgets={"3m": budget + 100}))
    )
    refused(f"budgets: 3m {budget + 100}, but the curves decided {budget}")
    # its grid must be the one this code tunes over
    (folder / "cfcql" / "campaign.json").write_text(json.dumps(dict(amendment, temperatures={"cfcql": [1, 2, 3]})))
    refused(r"temperatures of cfcql: \[1, 2, 3\], but experiments.smax.protocol.TEMPERATURES")
    # it must amend this campaign and may not redo a method the campaign runs itself
    (folder / "cfcql" / "campaign.json").write_text(
        json.dumps(dict(amendment, temperatures={"cfcql": grid}, methods=["omiga"]))
    )
    refused("field 'methods' must list methods the amended campaign does not run itself")
    (folder / "cfcql" / "campaign.json").write_text(json.dumps(dict(amendment, amends="other.json")))
    refused("field 'amends' must name")
    # the amendment is reported through the campaign it amends, never alone
    (folder / "cfcql" / "campaign.json").write_text(json.dumps(dict(amendment, temperatures={"cfcql": grid})))
    with pytest.raises(ValueError, match="it amends ../campaign.json: report that campaign"):
        protocol.campaign_protocol(folder / "cfcql" / "campaign.json", GridConfig(), tmp_path / "out")

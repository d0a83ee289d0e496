"""The sweep runner on a real Ray cluster: a head and a second node started with `ray start` on this
machine, a sweep across both, one node's worker killed in the middle of a run; the run is retried and
the results are complete and identical to those of a sweep without the kill."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from inspo.sweep.runner import run_sweep  # noqa: E402
from inspo.sweep.spec import parse_spec  # noqa: E402

# a child runs outside the repository root, whose source folder inspo_ext/ would hide the installed package
CHILD_FOLDER = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it

PORT = 6391  # the head's port; every other port of both nodes is fixed too (two nodes share one machine)
NODE_PORTS = [
    [
        "--dashboard-agent-listen-port",
        "52391",
        "--dashboard-agent-grpc-port",
        "52392",
        "--metrics-export-port",
        "52393",
        "--runtime-env-agent-port",
        "52394",
        "--min-worker-port",
        "20000",
        "--max-worker-port",
        "20199",
    ],
    [
        "--dashboard-agent-listen-port",
        "52395",
        "--dashboard-agent-grpc-port",
        "52396",
        "--metrics-export-port",
        "52397",
        "--runtime-env-agent-port",
        "52398",
        "--min-worker-port",
        "20200",
        "--max-worker-port",
        "20399",
    ],
]
# 127.0.0.1 only, so no token: Ray's token authentication is for clusters reachable from a network
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
TINY = {
    "steps": 120,
    "bc_steps": 10,
    "hidden": [8, 8],
    "critic_hidden": [8, 8],
    "eval_episodes": 2,
    "checkpoint_every": 40,
    "log_every": 10,
    "eval_every": 40,
}


def start_node(args, log):
    ray_cli = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen(
        [
            ray_cli,
            "start",
            *args,
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            "1",
            "--block",
            "--disable-usage-stats",
        ],
        env=RAY_ENV,
        start_new_session=True,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )


def stop(process):
    """`ray start --block` stops its node's processes on SIGTERM; its process group is killed if it does not."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("ray-logs")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    head = start_node(
        [
            "--head",
            "--port",
            str(PORT),
            "--include-dashboard",
            "false",
            "--ray-client-server-port",
            "10391",
            *NODE_PORTS[0],
        ],
        logs / "head.log",
    )
    nodes = [head]
    try:
        time.sleep(1.0)
        nodes.append(start_node(["--address", f"127.0.0.1:{PORT}", *NODE_PORTS[1]], logs / "node.log"))
        deadline = time.monotonic() + 60
        while True:
            try:
                if not ray.is_initialized():
                    ray.init(address=f"127.0.0.1:{PORT}", log_to_driver=False)
                if ray.cluster_resources().get("CPU", 0) >= 2:
                    break
            except ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "the two-node Ray cluster did not come up in 60 s: " + (logs / "node.log").read_text()[-800:]
                )
            time.sleep(0.5)
        yield dict(address=f"127.0.0.1:{PORT}", node=nodes[1])
    finally:
        ray.shutdown()
        for process in reversed(nodes):
            stop(process)
        # `ray start --head` left its address as this machine's default cluster: not after the test
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{PORT}"):
            current.unlink()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(todo.pop())], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        found += children
        todo += children
    return found


def sweep_worker_of(node):
    """The worker process of `node` (a `ray start` process) that runs a sweep task, else None."""
    for pid in descendants(node.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::inspo_sweep_group"):
                return pid
        except OSError:
            continue
    return None


def spec(out):
    return parse_spec(
        {
            "out": str(out),
            "seeds": 2,
            "set": TINY,
            "runs": [
                {"name": "fused", "env": "xor", "dataset": "c", "set": {"inspo.mode": "fused"}},
                {"name": "exact", "env": "xor", "dataset": "d", "set": {"inspo.mode": "exact"}},
            ],
        }
    )[2]


def test_a_killed_worker_is_retried_and_the_results_match_a_sweep_without_the_kill(cluster, tmp_path):
    killed = []

    def kill_the_second_nodes_worker_mid_run():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pid = sweep_worker_of(cluster["node"])
            if pid is not None and any((tmp_path / "killed").rglob("metrics.jsonl")):  # training has begun
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_second_nodes_worker_mid_run)
    killer.start()
    outcome = run_sweep(spec(tmp_path / "killed"), address=cluster["address"])
    killer.join()
    assert killed, "no sweep task ran on the second node"
    assert len(outcome.retries) == 1 and "attempt 1 failed" in outcome.retries[0], outcome.retries
    assert outcome.failures == []
    keys = {(name, seed) for name in ("fused", "exact") for seed in (0, 1)}
    assert set(outcome.results) == keys

    reference = run_sweep(spec(tmp_path / "reference"), address=cluster["address"])
    assert reference.retries == [] and set(reference.results) == keys
    for key in keys:
        assert outcome.results[key]["scores"] == reference.results[key]["scores"], key
        assert outcome.results[key]["config"] == reference.results[key]["config"], key

    # an interrupted or repeated sweep continues where it stopped: here everything is finished
    again = run_sweep(spec(tmp_path / "killed"), address=cluster["address"])
    assert again.reused == 4 and again.retries == []


def test_inspo_sweep_joins_a_cluster_by_address(cluster, tmp_path):
    spec_file = tmp_path / "bc.json"
    spec_file.write_text(
        json.dumps(
            {
                "name": "bc",
                "out": str(tmp_path / "runs"),
                "seeds": 2,
                "set": TINY,
                "runs": [{"name": "bc", "env": "xor", "dataset": "c", "algo": "bc"}],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "inspo", "sweep", str(spec_file), "--address", cluster["address"]],
        cwd=CHILD_FOLDER,
        env=RAY_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sweep: 2/2 done (0 reused), 0 running, 0 failed, 0 left" in done.stderr
    assert "| c (penalty) | bc | 2 |" in done.stdout
    data = json.loads((tmp_path / "runs" / "marl_eval.json").read_text())
    assert sorted(data["xor"]["c (penalty)"]["bc"]) == ["run_0", "run_1"]


def test_a_sweep_summarizes_each_run_and_a_new_machine_reuses_the_summaries(cluster, tmp_path):
    import shutil

    from inspo.sweep.store import SummaryStore, read_store

    store = SummaryStore(tmp_path / "summaries", "c0ffee", lambda config: f"dataset-{config.dataset}")
    outcome = run_sweep(spec(tmp_path / "runs"), address=cluster["address"], store=store)
    assert outcome.failures == [] and outcome.reused == 0
    summaries = read_store(store.root)
    assert set(summaries) == {(name, seed) for name in ("fused", "exact") for seed in (0, 1)}
    for (name, seed), summary in summaries.items():
        assert summary["key"]["dataset"] == f"dataset-{'c' if name == 'fused' else 'd'}"
        assert summary["results"]["scores"] == outcome.results[(name, seed)]["scores"]
        assert summary["curve"] and summary["cost"]["cpu_seconds"] > 0 and summary["cost"]["runs_in_process"] == 2
    # the machine is lost: only the summaries are left, and nothing trains again
    shutil.rmtree(tmp_path / "runs")
    again = run_sweep(spec(tmp_path / "runs"), address=cluster["address"], store=store)
    assert again.reused == 4 and not (tmp_path / "runs").exists()

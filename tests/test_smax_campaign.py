"""The committed SMAX campaign regenerates on this machine: each exported behaviour run's short rollout hashes
as recorded (the datasets are made from those parameters, so a CPU that rounds differently shows here first),
and the campaign's files are complete and consistent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jaxmarl")
from experiments.smax.protocol import SCALES, campaign_protocol, load_campaign  # noqa: E402
from experiments.smax.results import GridConfig  # noqa: E402
from inspo.sweep.execute import machine  # noqa: E402

# a child runs outside the repository root, whose source folder inspo_ext/ would hide the installed package
CHILD_FOLDER = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it

CAMPAIGN = Path(__file__).resolve().parents[1] / "experiments" / "smax-campaign"
CHECKS = json.loads((CAMPAIGN / "rollout_checks.json").read_text())


@pytest.mark.parametrize("map_name", sorted(CHECKS))
def test_an_exported_behaviour_run_rolls_out_as_recorded(map_name):
    recorded = CHECKS[map_name]
    # a process of its own: XLA's optimizations change the rollouts' rounding, and the other SMAX tests switch
    # them off for this process (smax_testing); the datasets are made with inspo.smax's own settings
    code = "import sys; from inspo.smax.tiers import rollout_check; print(rollout_check(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(CAMPAIGN / "behaviour" / map_name)],
        cwd=CHILD_FOLDER,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    found = done.stdout.strip().splitlines()[-1]
    assert found == recorded["sha256"], (
        f"the committed {map_name} behaviour parameters roll out differently on {machine()['cpu']} than on "
        f"{recorded['made_on']}: this CPU does not regenerate the campaign's datasets bit for bit, so runs made "
        "here cannot join the campaign's (docs/SMAX.md, 'The campaign')"
    )


def test_the_campaign_file_and_its_datasets_are_consistent():
    campaign = load_campaign(CAMPAIGN / "campaign.json")
    assert {"2s3z", "5m_vs_6m"} <= set(campaign["maps"])
    # CFCQL's tune and report come from the amendment (cfcql/): the protocol reports all four
    protocol = campaign_protocol(CAMPAIGN / "campaign.json", GridConfig(), Path("unused"))
    assert {"inspo-fused", "cfcql", "omiga", "bc"} <= set(protocol.methods)
    assert protocol.amendment.methods == ("cfcql",) and protocol.amendment.tag == "smax-campaign-1-cfcql"
    assert set(SCALES[campaign["scale"]].report_seeds) == {0, 1, 2, 3, 4}
    for map_name, tiers in campaign["datasets"].items():
        assert set(tiers) <= set(SCALES[campaign["scale"]].tiers), map_name
        assert all(len(entry["sha256"]) == 64 for entry in tiers.values())
        assert (CAMPAIGN / "behaviour" / map_name / "files.json").is_file()

"""`python -m experiments.smax`: the SMAX evaluation protocol (experiments.smax.protocol), or a campaign of it.

Three phases, each a resumable sweep: learning curves -> a step budget per map, a temperature sweep on tuning
seeds, the report on fresh seeds; `--campaign` takes the settings from a campaign file and `--table-only` rebuilds
the report from the run summaries alone. The command line sits above the protocol's modules (they never import
it), so they stay importable without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.smax.results import ALGORITHMS, DEFAULT_ROOT, GridConfig


def main(argv=None) -> int:
    from inspo.cli.sweep import add_ray_arguments

    parser = argparse.ArgumentParser(prog="python -m experiments.smax", description=__doc__.split("\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "2s3z"], help="maps of the protocol (default 3m 2s3z)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folders and outputs (default runs/smax-protocol-<scale or campaign>)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig override on top of the SMAX settings (repeatable)",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="train nothing: rebuild the outputs from the run summaries"
    )
    parser.add_argument(
        "--scale", choices=("tiny", "campaign", "full"), default="full", help="protocol sizes (default full)"
    )
    parser.add_argument(
        "--campaign",
        type=Path,
        default=None,
        help="a campaign file (campaign.json): maps, methods, scale and cuts from it, summaries in summaries/ beside it; "
        "training only from a checkout of its tag",
    )
    parser.add_argument("--store", type=Path, default=None, help="the run summaries' folder (default <out>/summaries)")
    parser.add_argument(
        "--stop-after", choices=("curves", "tune"), default=None, help="end the protocol after this phase"
    )
    parser.add_argument(
        "--record-datasets",
        action="store_true",
        help="with --campaign: add the campaign's datasets found under --data-root to datasets.json (hash, sizes, "
        "statistics); a recorded one must hash the same",
    )
    parser.add_argument("--methods", nargs="+", default=None, choices=list(ALGORITHMS), help="default: all five")
    parser.add_argument("--max-steps", type=int, default=None, help="steps of the curve runs (default: the scale's)")
    parser.add_argument(
        "--protocol-tiers", nargs="+", default=None, help="tiers of the protocol (default: the scale's)"
    )
    parser.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="also write the smax-protocol region of this RESULTS.md (figures into its results/ folder)",
    )
    parser.add_argument(
        "--smax-md",
        type=Path,
        default=None,
        help="also write the smax-campaign-cost region of this SMAX.md (a campaign's cost, planned and measured)",
    )
    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    from experiments.smax import protocol as protocol_module
    from inspo.cli.sweep import sweep_options
    from inspo.config import parse_overrides

    grid = GridConfig(data_seed=args.data_seed, data_root=args.data_root, overrides=parse_overrides(args.overrides))
    if args.methods is None:
        args.methods = list(protocol_module.METHODS)
    if args.out is None:
        args.out = Path(f"runs/smax-protocol-{args.scale if args.campaign is None else 'campaign'}")
    try:
        protocol = protocol_module.protocol_from_args(args, grid)
        if args.record_datasets:
            if args.campaign is None:
                raise ValueError("--record-datasets needs --campaign")
            protocol_module.record_datasets(args.campaign, grid, protocol_module.log_stderr)
            protocol_module.record_rollout_checks(args.campaign, protocol_module.log_stderr)
            return 0
        if args.table_only:
            protocol_module.write_outputs(protocol)
        else:
            commit = protocol_module.pinned_commit(args.campaign) if args.campaign is not None else None
            protocol_module.run_protocol(
                protocol,
                log=protocol_module.log_stderr,
                commit=commit,
                stop_after=args.stop_after,
                **sweep_options(args),
            )
    except (ValueError, RuntimeError) as error:
        print(f"python -m experiments.smax: error: {error}", file=sys.stderr)
        return 2
    try:
        if args.results_md is not None:
            protocol_module.write_results_md(protocol, args.results_md, args.results_md.parent / "results")
        if args.smax_md is not None:
            from experiments.smax.plan import write_smax_md

            write_smax_md(protocol, args.smax_md)
    except ValueError as error:
        print(f"python -m experiments.smax: error: {error}", file=sys.stderr)
        return 2
    print((protocol.out / "protocol.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

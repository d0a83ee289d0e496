"""`python -m experiments.smax`: the SMAX grid (train what is not finished, rebuild its table) and, with
`--protocol`, the three-phase protocol of experiments.smax.protocol. The command line sits above both modules (they
never import it), so the grid and the protocol stay importable without it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.smax.results import ALGORITHMS, DEFAULT_ROOT, GridConfig, markdown, marl_eval_json, run_grid


def main(argv=None) -> int:
    from inspo.cli.sweep import add_ray_arguments

    parser = argparse.ArgumentParser(prog="python -m experiments.smax", description=__doc__.split("\n")[0])
    defaults = GridConfig()
    parser.add_argument("--maps", nargs="+", default=list(defaults.maps))
    parser.add_argument("--tiers", nargs="+", default=list(defaults.tiers))
    parser.add_argument("--algorithms", nargs="+", default=list(defaults.algorithms), choices=list(ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=defaults.out)
    parser.add_argument("--final-episodes", type=int, default=defaults.final_episodes)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig override on top of the SMAX settings (repeatable)",
    )
    parser.add_argument("--table-only", action="store_true", help="only rebuild the JSON and table")
    protocol = parser.add_argument_group("protocol (experiments.smax.protocol: curves -> budget, tune, report)")
    protocol.add_argument("--protocol", action="store_true", help="run the three-phase protocol instead of the grid")
    protocol.add_argument(
        "--scale", choices=("tiny", "campaign", "full"), default="full", help="protocol sizes (default full)"
    )
    protocol.add_argument(
        "--campaign",
        type=Path,
        default=None,
        help="a campaign file (campaign.json): maps, methods, scale and cuts from it, summaries in summaries/ beside it; "
        "training only from a checkout of its tag",
    )
    protocol.add_argument(
        "--store", type=Path, default=None, help="the run summaries' folder (default <out>/summaries)"
    )
    protocol.add_argument(
        "--stop-after", choices=("curves", "tune"), default=None, help="end the protocol after this phase"
    )
    protocol.add_argument(
        "--record-datasets",
        action="store_true",
        help="with --campaign: add the campaign's datasets found under --data-root to datasets.json (hash, sizes, "
        "statistics); a recorded one must hash the same",
    )
    protocol.add_argument("--methods", nargs="+", default=None, choices=list(ALGORITHMS), help="default: all five")
    protocol.add_argument("--max-steps", type=int, default=None, help="steps of the curve runs (default: the scale's)")
    protocol.add_argument(
        "--protocol-tiers", nargs="+", default=None, help="tiers of the protocol (default: the scale's)"
    )
    protocol.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="also write the smax-protocol region of this RESULTS.md (figures into its results/ folder)",
    )
    protocol.add_argument(
        "--smax-md",
        type=Path,
        default=None,
        help="also write the smax-campaign-cost region of this SMAX.md (a campaign's cost, planned and measured)",
    )
    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    from inspo.cli.sweep import sweep_options
    from inspo.config import parse_overrides

    grid = GridConfig(
        maps=tuple(args.maps),
        tiers=tuple(args.tiers),
        algorithms=tuple(args.algorithms),
        seeds=tuple(args.seeds),
        data_seed=args.data_seed,
        data_root=args.data_root,
        out=args.out,
        final_episodes=args.final_episodes,
        overrides=parse_overrides(args.overrides),
    )
    if args.protocol:
        return _main_protocol(args, grid)
    if args.table_only:
        grid.out.mkdir(parents=True, exist_ok=True)
        (grid.out / "marl_eval.json").write_text(json.dumps(marl_eval_json(grid)))
        (grid.out / "smax_results.md").write_text(markdown(grid))
    else:
        run_grid(grid, log=lambda message: print(message, file=sys.stderr, flush=True), **sweep_options(args))
    print((grid.out / "smax_results.md").read_text())
    return 0


def _main_protocol(args, grid: GridConfig) -> int:
    from experiments.smax import protocol as protocol_module
    from inspo.cli.sweep import sweep_options

    if args.methods is None:
        args.methods = list(protocol_module.METHODS)
    if args.out == GridConfig().out:
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

"""`inspo eval RUN`: evaluate a run folder's (or a checkpoint's) policy in its environment or another one."""

from __future__ import annotations

import argparse
import json

from inspo.cli.train import print_table
from inspo.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder or its checkpoint.pt")
    parser.add_argument("--episodes", type=int, help="evaluation episodes (default: the run's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation rollouts")
    parser.add_argument("--device", help="device of the policy network (default: the run's)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument(
        "--env",
        help="evaluate in this environment instead of the run's (a dataset-only run "
        "has none): a built-in name or module:factory with the dataset's sizes",
    )


def run(args: argparse.Namespace) -> int:
    from inspo.envs import make_env
    from inspo.nets import make_policy_net, policy_fn, set_precision
    from inspo.runfolder import load_checkpoint, policy_state
    from inspo.task import eval_generator

    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    payload = load_checkpoint(args.checkpoint)
    config = TrainConfig.from_dict(
        {
            **payload["config"],
            **({"device": args.device} if args.device else {}),
            **({"env": args.env} if args.env else {}),
        }
    )
    if config.env is None:
        raise ValueError(
            f"{args.checkpoint} is a dataset-only run (no environment); give --env NAME or --env module:factory"
        )
    env = make_env(config)
    actor = make_policy_net(config, env.n_agents, env.obs_dim, env.n_actions)
    set_precision(actor, config.precision)
    try:
        actor.load_state_dict(policy_state(payload))
    except RuntimeError as error:
        raise ValueError(
            f"the policy in {args.checkpoint} does not fit {config.env} (agents {env.n_agents}, actions "
            f"{env.n_actions}, obs dim {env.obs_dim}): {str(error).splitlines()[0]}"
        ) from error
    episodes = args.episodes or config.eval_episodes
    rollouts = eval_generator(TrainConfig.from_dict({**config.to_dict(), "seed": args.seed}), payload["step"])
    scores = env.evaluate(policy_fn(actor), episodes=episodes, generator=rollouts)
    if args.json:
        print(json.dumps(scores, indent=2))
    else:  # the table's seed and time are the run's; the evaluation's seed is its own
        print_table([(payload.get("algo", "?"), config, {"scores": scores, "seconds": None})])
        print(f"  evaluated at step {payload['step']}: {episodes} episodes, evaluation seed {args.seed}")
        print("\n".join(f"  {key}: {value:.4f}" for key, value in scores.items()))
    return 0

"""The official OMIGA update against ours at equal network sizes, timed interleaved in one process.

    python benchmarks/peer_omiga.py --omiga PATH [--device cpu|cuda] [--shape 2s3z] [--rounds 30]
        [--variants official,ours,ours+compile,ours/S5]

PATH is a checkout of the official code's SMAC branch (git clone -b SMAC https://github.com/ZhengYinan-AIR/OMIGA),
which stays outside this repository: the script imports its networks from models/omiga_model.py (OMIGA, MixNet,
OMIGAConfig) and runs the body of the training loop of framework/trainer_omiga.py (`Trainer.train`'s
`run_epoch`: the Q, V and actor losses, their three clipped Adam steps, then `soft_update_target`), read from
the checkout with `ast` and run as written. What the script sets up itself, as `Trainer.__init__` does: the
three Adam optimizers on the same parameter groups at the SMAC default learning rate (5e-4), alpha = 10, the
target copy; the batch is random data of the shapes the loop reads ([B, 1, N, ...], context length 1).

Equal sizes: both sides use 256-256 agent networks shared across agents with a one-hot agent id (the official
Actor, QNet and VNet; ours at `inspo.bench.iteration.OMIGA_HIDDEN`, share_parameters) and a mixer of hidden size
64 (the official default hyper_hidden_dim; the official mixer reads the N agents' states concatenated, ours the
global state once). The variants, timed in turn in every round (medians; each call synchronized on CUDA):

    official      the official update, eager (its code has no compiled form)
    ours          our OMIGA learner's update, eager, one seed
    ours+compile  the same as one torch.compile graph (a CUDA graph on CUDA)
    ours/S5       5 seeds batched, eager; time per seed
    ours+compile/S5  5 seeds batched, compiled; time per seed

The ratio column is the official update's median over each variant's.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import importlib.util
import statistics
import sys
import textwrap
import types
from pathlib import Path

import torch

from inspo.bench.iteration import OMIGA_HIDDEN, SHAPES, Shape, make_case
from inspo.bench.timing import Clock

OFFICIAL_LR = 5e-4  # run_omiga_sc2.py --offline_lr
OFFICIAL_ALPHA = 10.0  # Trainer.__init__
OFFICIAL_MIXER_HIDDEN = 64  # run_omiga_sc2.py --hyper_hidden_dim
CLONE = "git clone -b SMAC https://github.com/ZhengYinan-AIR/OMIGA"
VARIANTS = ("official", "ours", "ours+compile", "ours/S5", "ours+compile/S5")


class CheckoutError(Exception):
    """The path is not a checkout of the official code's SMAC branch."""


def _load_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _method(tree: ast.Module, cls: str, name: str, source: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    raise CheckoutError(f"{source} has no {cls}.{name}")


def load_official(root: Path):
    """(the networks' module, update(self, config, batch), soft_update_target(self)) from the checkout."""
    model_file, trainer_file = root / "models" / "omiga_model.py", root / "framework" / "trainer_omiga.py"
    missing = [str(p.relative_to(root)) for p in (model_file, trainer_file) if not p.is_file()]
    if missing:
        raise CheckoutError(
            f"{root} is not a checkout of the official OMIGA code's SMAC branch (no {', '.join(missing)}); "
            f"get one with: {CLONE}"
        )
    models = _load_module(model_file, "official_omiga_model")
    source = trainer_file.read_text()
    tree = ast.parse(source)
    namespace: dict = {}
    for node in tree.body:  # the trainer's imports that this environment has (not its loggers: wandb, ...)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            with contextlib.suppress(ImportError):
                exec(compile(ast.Module([node], []), str(trainer_file), "exec"), namespace)
    train = _method(tree, "Trainer", "train", str(trainer_file))
    loops = [
        node
        for node in ast.walk(train)
        if isinstance(node, ast.For) and "cur_a" in {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    ]
    if len(loops) != 1:
        raise CheckoutError(f"{trainer_file}: Trainer.train has no single training loop over (..., cur_a, ...)")
    loop = loops[0]
    names = [n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)]  # it, s, o, pre_a, ...
    lines = source.splitlines()
    body = textwrap.dedent("\n".join(lines[loop.body[0].lineno - 1 : loop.body[-1].end_lineno]))
    update_source = f"def official_update(self, config, {', '.join(names)}):\n" + textwrap.indent(body, "    ")
    soft = _method(tree, "Trainer", "soft_update_target", str(trainer_file))
    soft_source = textwrap.dedent("\n".join(lines[soft.lineno - 1 : soft.end_lineno]))
    exec(compile(update_source + "\n\n" + soft_source, str(trainer_file), "exec"), namespace)
    return models, namespace["official_update"], namespace["soft_update_target"], names


class Official:
    """The official learner's state as Trainer.__init__ builds it, and one update on one random batch."""

    def __init__(self, root: Path, shape: Shape, device: torch.device, seed: int = 0):
        models, update, soft_update, self.names = load_official(root)
        torch.manual_seed(seed)
        n, a = shape.agents, shape.actions
        config = models.OMIGAConfig(num_actions=a, state_dim=shape.state_dim, obs_dim=shape.obs_dim, num_agents=n)
        mixers = (models.MixNet(shape.state_dim, n, OFFICIAL_MIXER_HIDDEN, a) for _ in range(2))
        model = models.OMIGA(*mixers, config).to(device)
        trainer = types.SimpleNamespace(raw_model=model, device=device, alpha=OFFICIAL_ALPHA, global_step=0)
        trainer.v_param = list(model.v.parameters())
        trainer.q_param = list(model.q.parameters()) + list(model.q_mix_model.parameters())
        trainer.actor_param = list(model.actor.parameters())
        trainer.actor_optimizer = torch.optim.Adam(trainer.actor_param, lr=OFFICIAL_LR)
        trainer.v_optimizer = torch.optim.Adam(trainer.v_param, lr=OFFICIAL_LR)
        trainer.q_optimizer = torch.optim.Adam(trainer.q_param, lr=OFFICIAL_LR)
        trainer.target_model = copy.deepcopy(model)
        trainer.target_model.train(False)
        trainer.config = types.SimpleNamespace(
            gamma=0.99, tau=0.005, grad_norm_clip=1.0, num_agents=n, num_actions=a, batch_size=shape.batch
        )
        trainer.soft_update_target = lambda: soft_update(trainer)
        self.trainer, self.update, self.shape, self.device = trainer, update, shape, device
        self.generator = torch.Generator().manual_seed(seed)

    def prepare(self) -> dict:
        """A random batch of the loop's shapes: [B, 1, N, ...] (context length 1), the state per agent."""
        b, n, a = self.shape.batch, self.shape.agents, self.shape.actions
        g = self.generator

        def randn(*size):
            return torch.randn(*size, generator=g).to(self.device)

        state, next_state = randn(b, 1, 1, self.shape.state_dim), randn(b, 1, 1, self.shape.state_dim)
        batch = dict(
            s=state.expand(-1, -1, n, -1).contiguous(),
            o=randn(b, 1, n, self.shape.obs_dim),
            pre_a=torch.randint(a, (b, 1, n, 1), generator=g).to(self.device),
            r=randn(b, 1, 1, 1).expand(-1, -1, n, -1).contiguous(),
            t=torch.zeros(b, 1, n, 1, device=self.device),
            s_next=next_state.expand(-1, -1, n, -1).contiguous(),
            o_next=randn(b, 1, n, self.shape.obs_dim),
            cur_a=torch.randint(a, (b, 1, n, 1), generator=g).to(self.device),
            next_ava=torch.ones(b, 1, n, a, device=self.device),
        )
        return {name: batch.get(name, 0) for name in self.names}  # `it` (the loop counter): 0

    def region(self, batch: dict) -> None:
        with _cuda_visible(self.device.type == "cuda"):
            self.update(self.trainer, self.trainer.config, **batch)


@contextlib.contextmanager
def _cuda_visible(visible: bool):
    """The official loop moves tensors with .cuda() whenever torch.cuda.is_available(): on the CPU run of a
    machine with a GPU, it must see none."""
    if visible:
        yield
        return
    saved = torch.cuda.is_available
    torch.cuda.is_available = lambda: False
    try:
        yield
    finally:
        torch.cuda.is_available = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--omiga", required=True, type=Path, help="a checkout of the official OMIGA SMAC branch")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--shape", default="2s3z", choices=sorted(SHAPES))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {list(VARIANTS)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    torch.set_num_threads(1)
    shape = SHAPES[args.shape]
    try:
        cases = {}
        for name in chosen:
            if name == "official":
                cases[name] = (Official(args.omiga.expanduser().resolve(), shape, device), 1)
            else:
                seeds = 5 if name.endswith("/S5") else 1
                cases[name] = (make_case("omiga", "fused", shape, seeds, "compile" in name, device), seeds)
    except CheckoutError as error:
        print(f"peer_omiga: error: {error}", file=sys.stderr)
        return 2

    clock = Clock(device)

    def timed(case) -> float:
        return clock.time(case.region, case.prepare())

    for name, (case, _) in cases.items():
        warm = timed(case) + timed(case)  # compiles (and records the CUDA graph of) the compiled variants
        print(f"{name}: first two calls {warm:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (case, seeds) in cases.items():
            times[name].append(timed(case) / seeds)
    where = "1 thread" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(
        f"\nOMIGA update at {shape.name} (B={shape.batch}, N={shape.agents}, A={shape.actions}; networks "
        f"{'-'.join(map(str, OMIGA_HIDDEN))} shared, mixer {OFFICIAL_MIXER_HIDDEN}), {where}, medians of "
        f"{args.rounds} interleaved rounds (per seed)"
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    official = medians.get("official")
    for name, median in medians.items():
        ratio = f"{official / median:5.2f}x the official" if official is not None else ""
        print(f"  {name:16s} {1e3 * median:8.2f} ms  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Do the grid's cells land where they did in fp32 when the networks run in bf16? A table per cell.

    python -m experiments.results --set precision=bf16 --only main- --out runs/grid-bf16 --docs runs/grid-bf16
    python -m experiments.results.precision --fp32 runs/reproduce --bf16 runs/grid-bf16 [--out FILE.md]

Reads the two grids' run folders (<out>/<cell key>/seed<k>/results.json, as `python -m experiments.results`
writes them) and compares every cell that both hold, seed for seed, on its headline score: bf16 against fp32 by
the grid's rule (`scores.compare`: a difference beyond both twice its standard error and the environment's
resolution), and whether the bf16 mean lies within the fp32 seeds' range. The default precision stays fp32
unless every cell is level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from experiments.results.comparisons import markdown_table, relation
from experiments.results.grid import build_grid
from experiments.results.scores import SCORES, Stats

# The page --out writes (docs/results/precision_bf16.md): what was compared, and how to regenerate it.
PAGE_HEADER = """# bf16 against fp32 on the results grid

Every `main-` cell of the results grid (matrix games and Bridge, 5 seeds each) trained twice from the same commit,
as published (fp32) and with `--set precision=bf16` (the networks' matmuls under `torch.autocast`; the ops, the
targets, the parameters and the optimizer state float32). Regenerate (about an hour on 2 cores each):

```bash
python -m experiments.results --out runs/reproduce --docs runs/reproduce
python -m experiments.results --set precision=bf16 --only main- --out runs/grid-bf16 --docs runs/grid-bf16
python -m experiments.results.precision --fp32 runs/reproduce --bf16 runs/grid-bf16 --out docs/results/precision_bf16.md
```

"bf16 vs fp32" is the grid's rule (a difference beyond both twice its standard error and the environment's
resolution); the last column asks the stricter question whether the bf16 mean lies within the fp32 seeds' range.
Scores: mean ± standard error over the seeds of the cell's headline score.

"""


def cell_scores(out: Path, key: str, env: str) -> Optional[list[float]]:
    """The headline score of every finished seed of cell `key` under `out`, by seed; None without one."""
    headline = SCORES[env][0][0]
    scores = []
    for results in sorted((out / key).glob("seed*/results.json"), key=lambda path: int(path.parent.name[4:])):
        values = json.loads(results.read_text())["scores"]
        if headline in values:
            scores.append(float(values[headline]))
    return scores or None


def compare_grids(fp32: Path, bf16: Path) -> tuple[list[str], int, int]:
    """(the markdown table, cells compared, cells level) of every cell both grids hold."""
    rows, level = [], 0
    for cell in build_grid():
        ours, theirs = cell_scores(bf16, cell.key, cell.env), cell_scores(fp32, cell.key, cell.env)
        if ours is None or theirs is None:
            continue
        low, high = min(theirs), max(theirs)
        word = relation(Stats(ours), Stats(theirs), cell.env)
        level += word == "level"
        inside = low <= Stats(ours).mean <= high
        rows.append((cell.key, Stats(theirs), Stats(ours), word, "yes" if inside else "no"))
    header = ("cell", "fp32", "bf16", "bf16 vs fp32", "bf16 mean within the fp32 seeds' range")
    return markdown_table(header, rows), len(rows), level


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.results.precision", description=__doc__.split("\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="run folders of the fp32 grid")
    parser.add_argument("--bf16", type=Path, required=True, help="run folders of the bf16 grid")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    for name in ("fp32", "bf16"):
        if not getattr(args, name).is_dir():
            parser.error(f"--{name} {getattr(args, name)}: no such folder")
    table, compared, level = compare_grids(args.fp32, args.bf16)
    if not compared:
        print("no cell has finished runs in both grids", file=sys.stderr)
        return 2
    text = "\n".join([*table, f"{level} of {compared} cells level (the grid's rule)."])
    print(text)
    if args.out is not None:
        args.out.write_text(PAGE_HEADER + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rows of a benchmark run and their outputs: the terminal table, CSV, Markdown and the speed-up plot."""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

NAN = float("nan")


@dataclass
class Row:
    section: str  # ops | iteration | batch_scaling | thread_scaling
    op: str  # op name, or "iteration/exact", "iteration/fused"
    impl: str  # ours | eager | compiled
    mode: str  # fwd | bwd | full
    batch: int
    agents: int
    actions: int
    threads: int
    device: str
    median_ms: float = NAN
    p25_ms: float = NAN
    p75_ms: float = NAN
    repeats: int = 0
    first_call_s: float = NAN  # the first call, untimed in the median: includes torch.compile's compile time
    peak_mb: float = NAN  # peak of new allocations inside the timed region
    bytes_moved: int = 0  # the roofline model's bytes (0: no model, e.g. a training iteration)
    gbps: float = NAN
    roofline: float = NAN  # gbps / the measured copy bandwidth
    vs_eager: float = NAN  # eager median / this median (> 1: faster than eager)
    vs_compiled: float = NAN
    note: str = ""

    @property
    def key(self) -> tuple:
        return (self.section, self.op, self.mode, self.batch, self.agents, self.actions, self.threads)

    @property
    def ok(self) -> bool:
        return not math.isnan(self.median_ms)


def fill_ratios(rows: Sequence[Row]) -> None:
    """vs_eager / vs_compiled of every row against the rows of the same key (same run)."""
    by_key: dict[tuple, dict[str, Row]] = {}
    for row in rows:
        by_key.setdefault(row.key, {})[row.impl] = row
    for row in rows:
        group = by_key[row.key]
        for impl, attr in (("eager", "vs_eager"), ("compiled", "vs_compiled")):
            other = group.get(impl)
            if other is not None and other.ok and row.ok:
                setattr(row, attr, other.median_ms / row.median_ms)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in dataclasses.fields(Row)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _csv_value(getattr(row, name)) for name in names})


def _csv_value(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


# ---------------------------------------------------------------------------------------------
# Tables: one line per (op, mode, size): the three implementations side by side.
# ---------------------------------------------------------------------------------------------
IMPL_ORDER = ("eager", "compiled", "ours")


def _ms(row: Optional[Row]) -> str:
    if row is None:
        return "-"
    if not row.ok:
        return "skip" if row.note.startswith("skipped") else "fail"
    spread = (row.p75_ms - row.p25_ms) / row.median_ms * 100 if row.median_ms > 0 else NAN
    return f"{_num(row.median_ms)} ±{spread:.0f}%"


def _num(x: float) -> str:
    if math.isnan(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def _mb(row: Optional[Row]) -> str:
    return "-" if row is None or math.isnan(row.peak_mb) else f"{row.peak_mb:.1f}"


def group_rows(rows: Iterable[Row]) -> list[dict[str, Row]]:
    groups: dict[tuple, dict[str, Row]] = {}
    for row in rows:
        groups.setdefault(row.key, {})[row.impl] = row
    return list(groups.values())


HEADERS = (
    "op",
    "mode",
    "B",
    "N",
    "A",
    "thr",
    "eager ms",
    "compiled ms",
    "ours ms",
    "ours vs eager",
    "ours vs compiled",
    "ours GB/s",
    "% of BW",
    "peak MB e/c/o",
    "note",
)


def table_cells(group: dict[str, Row]) -> list[str]:
    any_row = next(iter(group.values()))
    ours = group.get("ours")
    notes = sorted({r.note for r in group.values() if r.note})
    return [
        any_row.op,
        any_row.mode,
        str(any_row.batch),
        str(any_row.agents),
        str(any_row.actions),
        str(any_row.threads),
        *(_ms(group.get(impl)) for impl in IMPL_ORDER),
        _ratio(ours.vs_eager) if ours else "-",
        _ratio(ours.vs_compiled) if ours else "-",
        _num(ours.gbps) if ours else "-",
        _pct(ours.roofline) if ours else "-",
        "/".join(_mb(group.get(impl)) for impl in IMPL_ORDER),
        "; ".join(notes),
    ]


def format_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()


TERMINAL_WIDTHS = (22, 4, 6, 3, 3, 3, 13, 13, 13, 8, 8, 7, 6, 17, 0)


def terminal_header() -> str:
    line = format_line(HEADERS, TERMINAL_WIDTHS)
    return line + "\n" + "-" * len(line)


def terminal_line(group: dict[str, Row]) -> str:
    return format_line(table_cells(group), TERMINAL_WIDTHS)


def markdown_table(groups: Sequence[dict[str, Row]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for group in groups:
        lines.append("| " + " | ".join(table_cells(group)) + " |")
    return "\n".join(lines)


def plot_speedup(rows: Sequence[Row], path: Path, title: str) -> Optional[Path]:
    """Speed-up of ours over eager (solid) and over compiled (dashed) against B, one colour per op."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[str, list[Row]] = {}
    for row in rows:
        if row.impl == "ours" and row.ok and row.section in ("ops", "batch_scaling"):
            series.setdefault(f"{row.op} ({row.mode}, N={row.agents}, A={row.actions})", []).append(row)
    chosen = {
        label: pts
        for label, pts in series.items()
        if len({r.batch for r in pts}) >= 2
        and any(not math.isnan(r.vs_eager) for r in pts)  # eager timed (--impls without eager: no ratio to draw)
        and ("N=8, A=16" in label)
        and (("full" in label) or ("sequential" not in label and "fwd" in label))
    }
    if not chosen:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for index, (label, pts) in enumerate(sorted(chosen.items())):
        best = {}
        for r in pts:  # one point per B (batch_scaling repeats some ops-sweep sizes)
            best[r.batch] = r
        points = sorted(best.values(), key=lambda r: r.batch)
        colour = f"C{index}"
        batches = [r.batch for r in points]
        ax.plot(batches, [r.vs_eager for r in points], "o-", color=colour, label=f"{label} vs eager")
        if any(not math.isnan(r.vs_compiled) for r in points):
            ax.plot(batches, [r.vs_compiled for r in points], "s--", color=colour, label="  same vs torch.compile")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("speed-up of ours (x)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


ITERATION_HEADERS = (
    "shape",
    "iteration",
    "B",
    "N",
    "A",
    "thr",
    "variant",
    "ms per seed",
    "samples/s per seed",
    "vs plain PyTorch",
    "first call s",
    "note",
)
ITERATION_WIDTHS = (6, 15, 5, 3, 3, 3, 16, 12, 12, 9, 9, 0)


def iteration_cells(shape: str, row: Row) -> list[str]:
    per_second = row.batch / (row.median_ms / 1e3) if row.ok else NAN
    return [
        shape,
        row.op,
        str(row.batch),
        str(row.agents),
        str(row.actions),
        str(row.threads),
        row.impl,
        _ms(row),
        _num(per_second),
        _ratio(row.vs_eager),
        _num(row.first_call_s),
        row.note,
    ]


def iteration_header() -> str:
    line = format_line(ITERATION_HEADERS, ITERATION_WIDTHS)
    return line + "\n" + "-" * len(line)


def iteration_line(shape: str, row: Row) -> str:
    return format_line(iteration_cells(shape, row), ITERATION_WIDTHS)


def iteration_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(ITERATION_HEADERS) + " |", "|" + "---|" * len(ITERATION_HEADERS)]
    for row in rows:
        shape = "2s3z" if (row.batch, row.agents) == (256, 5) else f"B={row.batch}"
        lines.append("| " + " | ".join(iteration_cells(shape, row)) + " |")
    return "\n".join(lines)


SECTION_TITLES = {
    "ops": "Ops: forward (fwd), backward (bwd), both (full)",
    "batch_scaling": "Scaling with B (sequential_policy_loss, fwd+bwd)",
    "thread_scaling": "Scaling with threads (sequential_policy_loss, fwd+bwd)",
    "iteration": "One training iteration of each learner (plain PyTorch, our ops, compiled, 5 seeds batched)",
}


def markdown_report(header: dict[str, str], rows: Sequence[Row], target_lines: Sequence[str]) -> str:
    lines = ["# inspo bench results", ""]
    lines += [f"* {key}: {value}" for key, value in header.items()]
    for section, title in SECTION_TITLES.items():
        if section == "iteration":
            chosen = [r for r in rows if r.section == section]
            if chosen:
                lines += ["", f"## {title}", "", iteration_table(chosen)]
            continue
        groups = group_rows(r for r in rows if r.section == section)
        if groups:
            lines += ["", f"## {title}", "", markdown_table(groups)]
    lines += ["", "## Targets", ""] + [f"* {line}" for line in target_lines]
    return "\n".join(lines) + "\n"

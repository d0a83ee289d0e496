"""Citations of the spec: code, tests and docs cite docs/ALGORITHM.md (the one spec in the repository) as
`docs/FILE.md#anchor`, GitHub's anchor of a heading. Every such citation must name a heading that exists, every
Markdown link `[..](FILE.md#anchor)` in the docs too, and nothing may cite the old out-of-repo spec by section
number (its numbers drifted from the repo's own document)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inspo.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TREES = ("python", "csrc", "tests", "benchmarks", "docs")
SUFFIXES = {".py", ".h", ".cpp", ".cu", ".cuh", ".md"}
CITATION = re.compile(r"(?<![\w/.-])docs/([\w-]+\.md)(?:#([\w-]*))?")
MARKDOWN_LINK = re.compile(r"\]\(((?:[\w-]+/)*[\w-]+\.md)?#([^)\s]*)\)")
# the old forms: "spec section 5", "spec sections 4-5", "spec 4-5", "spec §3", "(spec: environments.md)", the
# out-of-repo folder; spelled out of pieces so that this file does not match itself
SPEC = "spec"
STALE = re.compile(
    rf"\b{SPEC}\s+(?:sections?\s*|§\s*)?\d|\b{SPEC}:\s*(?:inspo|environments|baselines)\.md|shared/{SPEC}/",
    re.IGNORECASE,
)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (letters, digits, `_`, `-` kept),
    each space a hyphen."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's ATX headings (outside fenced code), a repeated one suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if fenced or not heading:
            continue
        anchor = github_anchor(heading.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def sources() -> list[Path]:
    files = [ROOT / "README.md"]
    for tree in TREES:
        files += sorted(p for p in (ROOT / tree).rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return [p for p in files if "build" not in p.relative_to(ROOT).parts and p != Path(__file__).resolve()]


def test_github_anchor_matches_githubs_rule():
    assert github_anchor("Soft in-sample Bellman target") == "soft-in-sample-bellman-target"
    assert github_anchor("The op library (`inspo_ext`)") == "the-op-library-inspo_ext"
    assert github_anchor("M-NE game") == "m-ne-game"
    assert github_anchor("CFCQL (`--algo cfcql`)") == "cfcql---algo-cfcql"
    assert anchors("# A\n## Notes\n```\n# not a heading\n```\n### Notes\n") == {"a", "notes", "notes-1"}


def test_every_cited_heading_exists():
    docs = {p.name: anchors(p.read_text(encoding="utf-8")) for p in (ROOT / "docs").glob("*.md")}
    cited, broken = 0, []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            targets = [(m.group(1), m.group(2)) for m in CITATION.finditer(line)]
            if path.suffix == ".md":
                for m in MARKDOWN_LINK.finditer(line):
                    linked = (path.parent / m.group(1)).resolve() if m.group(1) else path
                    if linked.parent == ROOT / "docs":
                        targets.append((linked.name, m.group(2)))
            for name, anchor in targets:
                cited += anchor is not None
                if name not in docs:
                    broken.append(f"{rel}:{number}: docs/{name} does not exist")
                elif anchor is not None and anchor not in docs[name]:
                    broken.append(f"{rel}:{number}: docs/{name} has no heading with anchor #{anchor}")
    assert not broken, "\n".join(broken)
    # the scan sees the citations (a broken pattern would find none and pass)
    assert cited >= 20


def test_no_citation_of_the_old_numbered_spec():
    stale = [
        f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}"
        for path in sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if STALE.search(line)
    ]
    assert not stale, "cite docs/ALGORITHM.md#<heading> instead:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    "field", sorted(set(re.findall(r"TrainConfig\.(\w+)", (ROOT / "docs/ALGORITHM.md").read_text())))
)
def test_the_specs_switches_are_config_fields(field):
    # each (choice) of the spec names the TrainConfig field that switches it
    assert field in TrainConfig.__dataclass_fields__, f"docs/ALGORITHM.md names TrainConfig.{field}, which is no field"


def test_the_readme_says_what_a_batched_seed_shares_and_what_resample_takes():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "each seed exactly its single run" not in readme  # not so in float32
    assert "draws exactly what its single run draws and, in float64, reaches the same numbers; in float32" in readme
    assert "float64 uniforms in [0, 1)" in readme  # resample refuses float32 uniforms

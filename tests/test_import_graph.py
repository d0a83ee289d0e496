"""The import graph of inspo_ext, inspo and experiments: no cycle, and no module imports from a layer above its own.

Every `import` / `from ... import` of every module counts, at module level or inside a function (a
function-level import is still a dependency; only `if TYPE_CHECKING:` blocks are left out), read with
`ast` without importing anything. A module importing one of its own ancestor packages is left out
too: Python runs the ancestors' `__init__` first anyway (`from inspo import __version__`,
`from inspo_ext import _C`). Entry points that name a module as a string ("inspo.smax.task:make_env"
in a registry) are not imports: that is how a lower layer reaches a plugin above it.

The layers, lowest first (README, Layout); a module may import its own layer and those below:
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# where each top-level package's folder lies: the ops at the root, the training package under python/, and the
# experiments (what regenerates our own documents; not in the wheel) at the root
PACKAGES = {"inspo_ext": ROOT / "inspo_ext", "inspo": ROOT / "python" / "inspo", "experiments": ROOT / "experiments"}

LAYERS = (
    # 0: the ops and the small utilities everything may use
    ("inspo_ext", "inspo.options", "inspo.dependencies", "inspo.atomic", "inspo.progress", "inspo.stats"),
    # 1: datasets and their formats
    ("inspo.data",),
    # 2: environments (SMAX's adapter and its dataset making among them) and the algorithm registry (each
    # algorithm's options; its learner named as a "module:Class" string)
    ("inspo.envs", "inspo.smax", "inspo.algorithms"),
    # 3: the run config
    ("inspo.config",),
    # 4: networks, a run's task (environment, dataset, generator) and its run folder
    ("inspo.nets", "inspo.task", "inspo.runfolder"),
    # 5: the learners (and the batched ops they call)
    ("inspo.learners",),
    # 6: the training loop, a trained policy's loader
    ("inspo.loop", "inspo.policy"),
    # 7: what runs training: sweeps, benchmarks; the package itself (inspo/__init__ exports train, train_seeds and
    # load_policy)
    ("inspo.sweep", "inspo.bench", "inspo"),
    # 8: the command line, one module per command
    ("inspo.cli", "inspo.__main__"),
    # 9: the experiments, outside the package: nothing in it imports them
    ("experiments",),
)
# Upward imports owned by open work, each with why it is still here. The test fails when one of them
# is gone, so that the entry goes with it.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def module_names() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package __init__)} of every module of the three packages."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def is_main_guard(test: ast.expr) -> bool:
    return ast.unparse(test).replace("'", '"') == '__name__ == "__main__"'


def imported_names(path: Path, package: str) -> set[str]:
    """The dotted names a module imports (absolute; relative ones resolved against `package`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        # imports for type checkers only, and a script's entry point (it runs as __main__, never on import)
        if isinstance(block, ast.If) and ("TYPE_CHECKING" in ast.unparse(block.test) or is_main_guard(block.test))
        for statement in block.body
        for node in ast.walk(statement)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # submodules imported by name
    return names


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of the three packages it imports}."""
    modules = module_names()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for imported in imported_names(path, package):
            while imported and imported not in modules:  # a function or class: its module
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    """The layer of `module`: of the longest entry of LAYERS that is it or a package above it (the
    entry "inspo" is the package's __init__ only)."""
    best, level = -1, None
    for index, members in enumerate(LAYERS):
        for member in members:
            inside = module.startswith(member + ".") and member != "inspo"
            if (module == member or inside) and len(member) > best:
                best, level = len(member), index
    assert level is not None, f"{module} is in no layer: add it to LAYERS"
    return level


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_is_read(graph):
    """The reader sees the imports it must (so that an empty graph cannot pass)."""
    assert {"inspo.envs", "inspo.options", "inspo.algorithms", "inspo.data.formats"} <= graph["inspo.config"]
    assert "inspo.smax.env" in graph["inspo.smax.task"]  # a relative import
    assert "inspo.task" in graph["inspo.cli.eval"]  # a function-level import
    assert "experiments.smax.results" in graph["experiments.smax.protocol"]
    assert "inspo.data.card" in graph["inspo.smax.tiers"]  # `from inspo.data import card`


def test_no_import_cycle(graph):
    assert find_cycle(graph) == []


def test_no_import_from_a_higher_layer(graph):
    upward = {
        (module, target): f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    }
    assert sorted(set(upward) - set(KNOWN_UPWARD)) == [], [upward[edge] for edge in set(upward) - set(KNOWN_UPWARD)]
    assert sorted(set(KNOWN_UPWARD) - set(upward)) == [], "gone: remove from KNOWN_UPWARD"


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []

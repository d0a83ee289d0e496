"""The docs site's API pages (docs/api/, mkdocs.yml) cover the public API: every export of inspo_ext and the
training API (inspo's own exports and every name the README's Python example imports); every `:::` directive
names an object that exists, and mkdocs.yml's nav lists every page. (CI builds the site with warnings as errors.)"""

import ast
import importlib
import re
from pathlib import Path

import yaml

import inspo
import inspo_ext

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))


def resolve(path: str):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(path)


def documented() -> dict[str, object]:
    """{dotted path: object} of every `::: path` directive of the API pages."""
    paths = [path for page in API_PAGES for path in re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M)]
    return {path: resolve(path) for path in paths}


def missing(objects: dict[str, object]) -> list[str]:
    pages = [id(found) for found in documented().values()]
    return sorted(name for name, found in objects.items() if id(found) not in pages)


def test_every_export_of_inspo_ext_has_its_api_entry():
    assert API_PAGES, "no API pages in docs/api"
    assert missing({name: getattr(inspo_ext, name) for name in inspo_ext.__all__}) == []


def test_the_training_api_and_the_readmes_python_imports_have_their_api_entries():
    readme = (ROOT / "README.md").read_text()
    example = readme.split("<!-- readme:python-example")[1].split("```python\n")[1].split("```")[0]
    imported = {}
    for node in ast.walk(ast.parse(example)):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("inspo"):
            module = importlib.import_module(node.module)
            imported.update({f"{node.module}.{alias.name}": getattr(module, alias.name) for alias in node.names})
    assert "inspo.config.make_config" in imported  # the block was found and read
    exports = {f"inspo.{name}": getattr(inspo, name) for name in ("load_policy", "train_seeds")}
    assert missing({**imported, **exports}) == []


def test_the_nav_lists_every_page():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def pages(entry):
        if isinstance(entry, str):
            return [entry]
        items = entry.values() if isinstance(entry, dict) else entry
        return [page for item in items for page in pages(item)]

    in_nav = set(pages(config["nav"]))
    docs = ROOT / "docs"
    on_disk = {str(page.relative_to(docs)) for page in docs.rglob("*.md")} | {"index.md", "changelog.md"}
    assert in_nav == on_disk

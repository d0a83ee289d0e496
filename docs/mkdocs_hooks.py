"""mkdocs hooks (mkdocs.yml): the site's home page is README.md and its changelog CHANGELOG.md, read from the
repository root so that each text has one source. Their links point from the root (`docs/ALGORITHM.md`); on
the site the guides sit beside the home page (`ALGORITHM.md`)."""

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}


def on_files(files, config):
    for page, source in PAGES.items():
        files.append(File.generated(config, page, content=site_links((ROOT / source).read_text())))
    return files


def site_links(markdown: str) -> str:
    markdown = re.sub(r"\]\(docs/", "](", markdown)
    return markdown.replace("](CHANGELOG.md)", "](changelog.md)")

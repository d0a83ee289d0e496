"""The version has one source (inspo.__version__); the installed metadata and the CHANGELOG follow it."""

import re
from importlib.metadata import version
from pathlib import Path

import inspo

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"


def test_the_installed_metadata_carries_the_packages_version():
    assert version("inspo") == inspo.__version__


def test_the_newest_release_in_the_changelog_is_the_packages_version():
    releases = re.findall(r"^## (\d+\.\d+\.\d+)\b", CHANGELOG.read_text(), flags=re.MULTILINE)
    assert releases, f"{CHANGELOG}: no release heading (## X.Y.Z)"
    assert releases[0] == inspo.__version__, f"CHANGELOG.md's newest release {releases[0]} != {inspo.__version__}"

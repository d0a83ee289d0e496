"""What a user installing the package meets: the license, `inspo --version`, the README's wheel and development
commands, and the wheel builds' settings (abi3 from CPython 3.12, one wheel per older version)."""

import re
import sys
from importlib.metadata import metadata
from pathlib import Path

import pytest

import inspo
from inspo.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project supports 3.9
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()


def test_the_license_file_is_the_licence_the_metadata_names():
    assert PYPROJECT["project"]["license"] == {"text": "MIT"} and metadata("inspo")["License"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_inspo_version_prints_the_packages_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"inspo {inspo.__version__}\n"


def test_the_development_install_installs_the_build_requirements_first():
    block = README.split("<!-- readme:dev-install")[1].split("```bash\n")[1].split("```")[0]
    first, second = block.strip().splitlines()
    for requirement in PYPROJECT["build-system"]["requires"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group()
        assert name in first.split(), f"the README's development install does not install {name} first"
    assert "--no-build-isolation -e " in second


def test_the_readmes_wheel_command_leaves_the_dependencies_out():
    assert "`pip wheel --no-deps . -w dist`" in README and "pip wheel . " not in README


def test_one_abi3_wheel_from_cpython_3_12_and_one_wheel_per_older_version():
    builds = PYPROJECT["tool"]["cibuildwheel"]["build"]
    minimum = re.match(r">=3\.(\d+)$", PYPROJECT["project"]["requires-python"]).group(1)
    assert builds == [f"cp3{minor}-*" for minor in range(int(minimum), 13)]
    assert PYPROJECT["tool"]["scikit-build"]["wheel"]["py-api"] == "cp312"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    # nanobind builds a stable-ABI module only when FindPython was asked for it
    assert "STABLE_ABI" in cmake and "${SKBUILD_SABI_COMPONENT}" in cmake

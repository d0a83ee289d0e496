"""The source checkout's inspo_ext/ folder hiding an installed inspo_ext (inspo_ext/_checkout.py): refused with
how to run instead, and only then."""

import sys

import pytest

from inspo_ext._checkout import refuse_a_shadowed_install


def package(root, name, compiled):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    if compiled:
        (folder / "_C.abi3.so").write_bytes(b"")
    return folder


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A checkout (its root holds CMakeLists.txt and the package without a compiled module) and an install."""
    checkout, site = tmp_path / "checkout", tmp_path / "site"
    source = package(checkout, "shadowed_pkg", compiled=False)
    (checkout / "CMakeLists.txt").write_text("")
    monkeypatch.setattr(sys, "path", [str(checkout), str(site), *sys.path])
    monkeypatch.delitem(sys.modules, "shadowed_pkg", raising=False)
    return source, site


def test_a_checkout_ahead_of_an_installed_compiled_copy_is_refused_naming_both(layout):
    source, site = layout
    installed = package(site, "shadowed_pkg", compiled=True)
    with pytest.raises(ImportError, match="source folder .*checkout/shadowed_pkg") as error:
        refuse_a_shadowed_install("shadowed_pkg", source)
    assert str(installed) in str(error.value) and "pip install -e ." in str(error.value)


def test_without_an_installed_compiled_copy_the_checkout_imports(layout):
    source, site = layout
    package(site, "shadowed_pkg", compiled=False)
    refuse_a_shadowed_install("shadowed_pkg", source)  # nothing better to run: the reference fallback warns


def test_a_folder_outside_a_checkout_is_never_refused(layout):
    source, site = layout
    package(site, "shadowed_pkg", compiled=True)
    (source.parent / "CMakeLists.txt").unlink()
    refuse_a_shadowed_install("shadowed_pkg", source)


def test_the_imported_package_itself_passes():
    import inspo_ext

    assert inspo_ext._backend.COMPILED  # this test run's own inspo_ext (installed or editable) loads its module

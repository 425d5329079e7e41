"""Fixtures shared by the Python test suites: the packages as users get them.

`scripts/package` builds the wheel and the npm tarball into dist/; `installed_python` is a
fresh venv with the wheel installed, `installed_node` a fresh folder with the tarball
installed. Tests run the examples and the packages' own tests from there, never from the
source tree. A missing tool fails with the command that installs it.
"""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def component_version():
    """The Cargo workspace version, which both packages must carry."""
    metadata = json.loads(run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--locked"], cwd=ROOT))
    return next(p["version"] for p in metadata["packages"] if p["name"] == "eventseal-component")


@pytest.fixture(scope="session")
def dist(component_version):
    """Builds both packages with scripts/package: {"wheel": path, "npm": path}."""
    if shutil.which("cargo") is None:
        pytest.fail("cargo is missing: install the Rust toolchain (rustup), then scripts/setup")
    run([str(ROOT / "scripts" / "package")], cwd=ROOT)
    wheel = ROOT / "dist" / f"eventseal-{component_version}-py3-none-any.whl"
    tarball = ROOT / "dist" / f"eventseal-component-{component_version}.tgz"
    for built in (wheel, tarball):
        assert built.is_file(), f"scripts/package did not make {built}: {sorted(p.name for p in (ROOT / 'dist').iterdir())}"
    return {"wheel": wheel, "npm": tarball}


@pytest.fixture(scope="session")
def installed_python(dist, tmp_path_factory):
    """A fresh venv with only the wheel (and its dependency, wasmtime) installed: its python."""
    venv = tmp_path_factory.mktemp("installed-python") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(dist["wheel"])])
    return python


@pytest.fixture(scope="session")
def eventseal(installed_python):
    """The installed package, imported into this test process from the fresh venv."""
    purelib = run([str(installed_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    site.addsitedir(purelib)
    import eventseal

    assert Path(eventseal.__file__).is_relative_to(purelib), f"eventseal imported from {eventseal.__file__}, not the fresh venv"
    return eventseal


@pytest.fixture(scope="session")
def installed_node(dist, tmp_path_factory):
    """A fresh folder with only the npm tarball (and its dependencies) installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are missing: install Node.js 20 or later (apt-get install nodejs npm)")
    folder = tmp_path_factory.mktemp("installed-node")
    run(["npm", "init", "-y"], cwd=folder)
    run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", str(dist["npm"])], cwd=folder)
    return folder

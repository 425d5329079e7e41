"""The packages as users install them: each carries the component's version, and each
package's own tests pass against the installed copy (not the source tree)."""

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_both_packages_carry_the_components_version_and_the_component_built_here(dist, installed_python, installed_node, component_version):
    shown = subprocess.run([str(installed_python), "-c", "import eventseal; print(eventseal.__version__)"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == component_version
    manifest = json.loads((installed_node / "node_modules" / "@eventseal" / "component" / "package.json").read_text())
    assert manifest["version"] == component_version
    built = (ROOT / "target" / "wasm32-wasip2" / "release" / "eventseal_component.wasm").read_bytes()
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        assert wheel.read("eventseal/eventseal.component.wasm") == built, "the wheel bundles the component built here"
        assert "eventseal/py.typed" in wheel.namelist()
    assert list((installed_node / "node_modules" / "@eventseal" / "component").rglob("*.d.ts")), "the npm package ships types"


def test_the_python_package_tests_pass_against_the_installed_wheel(installed_python, tmp_path):
    tests = tmp_path / "tests"
    shutil.copytree(ROOT / "packages" / "python" / "tests", tests)
    done = subprocess.run([str(installed_python), "-m", "unittest", "discover", "-s", str(tests), "-v"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "Ran " in done.stderr and " 0 tests" not in done.stderr


def test_the_npm_package_tests_pass_against_the_installed_tarball(installed_node):
    tests = installed_node / "test"
    shutil.rmtree(tests, ignore_errors=True)
    shutil.copytree(ROOT / "packages" / "npm" / "test", tests)
    done = subprocess.run(["node", "--test", "test/"], cwd=installed_node, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout, done.stdout[-2000:]

"""Packaging: pinned versions agree across files; the wheel ships MNIST and finds it when installed."""

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WHEEL_LIMIT_BYTES = 60e6  # MNIST (11.6 MB) and the shipped models (under 40 MB) with the code


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = project["dependencies"] + extras["test"] + extras["classroom"]
    pins = {}
    for spec in specs:
        name, sep, version = spec.partition("==")
        assert sep, f"{spec!r} in pyproject.toml is not pinned with =="
        pins[_norm(name)] = version
    return pins


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and not dep.startswith(("python=", "pip")):
            name, _, version = dep.partition("=")
            conda[_norm(name)] = version
    assert conda == _pyproject_pins()


def test_lock_file_agrees_with_pyproject():
    lock = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[_norm(name)] = version
    for name, version in _pyproject_pins().items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"


@pytest.mark.slow
def test_installed_wheel_finds_the_bundled_mnist_and_models(tmp_path):
    """Build the wheel, install it into a read-only folder, and load MNIST and a shipped model from there."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("vae_lite-*.whl")
    assert wheel.stat().st_size <= WHEEL_LIMIT_BYTES, f"the wheel is {wheel.stat().st_size / 1e6:.1f} MB"
    with zipfile.ZipFile(wheel) as zf:
        models = {Path(n).name for n in zf.namelist() if n.startswith("vae_lite/_models/")}
    assert models == {p.name for p in (ROOT / "vae_lite" / "_models").iterdir() if p.suffix in (".npz", ".json")}
    with zipfile.ZipFile(wheel) as zf:
        shipped = {Path(n).name: hashlib.md5(zf.read(n)).hexdigest()
                   for n in zf.namelist() if n.startswith("vae_lite/_data/mnist/")}
    assert shipped == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    site.chmod(0o555)  # a read-only install location: nothing may be written there
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from vae_lite import data; "
        "d = data.load('mnist', download=False); "
        "print(data.bundled_dir(), d.x_train.shape, d.y_test[:3].tolist()); "
        "from vae_lite import training; print(training.train(latent_dim=2, data=d, progress=False).source)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VAE_LITE_DATA", "VAE_LITE_DATASET")}
    env["VAE_LITE_CACHE"] = str(tmp_path / "empty-cache")
    env["VAE_LITE_TRAINING"] = "forbid"  # the model must come from the installed package
    out = subprocess.run([sys.executable, "-c", script, str(site)], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env).stdout
    assert out.startswith(str(site / "vae_lite" / "_data")) and "(60000, 784) [7, 2, 1]" in out
    assert out.strip().endswith("shipped")
    assert not (tmp_path / "empty-cache").exists()  # found in the package: nothing downloaded, trained or cached

"""The environment is locked and the project installs as a package: the locks (requirements*.txt) pin every
input (requirements*.in) within its range, the installed package declares requirements.in, and `vrnn` is
`python -m vrnn`. Refresh the locks with `bash scripts/lock.sh` (README, "Two commands")."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CUDA_ONLY = ("nvidia-", "cuda-", "triton")  # PyPI's CUDA build of torch needs these; the CPU build does not


def inputs(name: str) -> list[Requirement]:
    """The requirements an input file lists (comments, -r and -c lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / name).read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def lock(name: str) -> dict[str, str]:
    """{canonical name: version} of a lock; every line must be an exact pin."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.marker, f"{name}: '{line}' is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


@pytest.mark.parametrize("locked,sources", [("requirements.txt", ["requirements.in"]),
                                            ("requirements-dev.txt", ["requirements.in", "requirements-dev.in"])])
def test_lock_pins_every_input_within_its_range(locked, sources):
    """Fails when an input was edited and the lock not refreshed (bash scripts/lock.sh)."""
    pins = lock(locked)
    for source in sources:
        for req in inputs(source):
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} ({source}) is not in {locked}: run bash scripts/lock.sh"
            assert req.specifier.contains(Version(pins[name]), prereleases=True), \
                f"{locked} pins {name}=={pins[name]}, outside {source}'s {req}: run bash scripts/lock.sh"
    assert pins["torch"] == "2.13.0"  # the README's rule; matches the CPU wheel 2.13.0+cpu too
    assert not [n for n in pins if n.startswith(CUDA_ONLY)], "CUDA libraries in the lock (see scripts/lock.sh)"


def test_dev_lock_has_the_app_lock_inside_it():
    """The tests run on exactly the versions the app installs (requirements-dev.in constrains to requirements.txt)."""
    app, dev = lock("requirements.txt"), lock("requirements-dev.txt")
    assert {n: dev.get(n) for n in app} == app


def _installed():
    try:
        return importlib.metadata.distribution("vrnn-explorer")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("vrnn-explorer is not installed here (bash scripts/test.sh installs it: pip install -e .)")


def test_installed_package_declares_requirements_in():
    """pyproject.toml reads its dependencies from requirements.in; an install made before an edit of it
    declares the old list (reinstall: pip install -e .)."""
    declared = sorted(str(Requirement(r)) for r in _installed().requires or [])
    assert declared == sorted(str(r) for r in inputs("requirements.in")), \
        "the installed vrnn-explorer declares another requirements.in: reinstall it (pip install -e .)"


def test_vrnn_command_is_python_m_vrnn(monkeypatch):
    from vrnn.__main__ import build_parser

    _installed()
    script = Path(sys.executable).parent / "vrnn"
    if not script.is_file():
        pytest.skip(f"no vrnn command beside {sys.executable}")
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal's width
    command = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert command.returncode == 0, command.stderr[-2000:]
    assert command.stdout == build_parser().format_help()  # the parser of `python -m vrnn`
    args = ["analyze", "no.safetensors", "no.wav"]  # a usage error: both must exit 2 with the same message
    command = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
    module = subprocess.run([sys.executable, "-m", "vrnn", *args], capture_output=True, text=True, timeout=120)
    assert command.returncode == module.returncode == 2, command.stderr[-2000:]
    assert "no.safetensors" in command.stderr and command.stderr == module.stderr

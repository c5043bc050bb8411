"""The layering contract of pyproject.toml holds for the code as it is, and it is a real check:
an import against the arrows (the model layer reaching into the registry, the library into the
API, or the API's HTTP layer into its runtime) makes `lint-imports` fail and name the offending
import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the contract, to break on purpose."""
    for package in ("forecast", "api"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_the_layering_contract(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "offending_import", "reported"),
    [
        (
            "forecast/model/config.py",
            "import forecast.registry.store",
            "forecast.model.config -> forecast.registry.store",
        ),
        ("forecast/cli/accuracy.py", "import api.runtime.server", "forecast.cli.accuracy -> api.runtime.server"),
        (
            "forecast/serving/engine.py",
            "import forecast.training.job",
            "forecast.serving.engine -> forecast.training.job",
        ),
        # api/ by role: HTTP never reaches into the runtime's supervisor, access never into HTTP
        ("api/http/app.py", "import api.runtime.server", "api.http.app -> api.runtime.server"),
        ("api/access/middleware.py", "import api.http.schemas", "api.access.middleware -> api.http.schemas"),
        ("api/errors.py", "import api.access.keys", "api.errors -> api.access.keys"),
        # the client, which must install and import without the server or torch
        ("forecast/client/frames.py", "import forecast.serving.pipeline", "forecast.client.frames -> forecast.serving"),
        ("forecast/client/http.py", "import torch", "forecast.client.http -> torch"),
    ],
)
def test_an_import_against_the_arrows_breaks_the_contract(
    tree: Path, module: str, offending_import: str, reported: str
) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{offending_import}  # against the layers\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert "1 broken" in result.stdout and reported in result.stdout

"""The documentation: the reference pages say what the code does (docs/gen_reference.py writes them
from the parser, the settings, the OpenAPI document and the metrics), the site builds under
`mkdocs build --strict` (a broken link or anchor, or a page missing from the nav, fails it), and the
README stays one screen that links into docs/."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
GENERATED = ["cli.md", "settings.md", "api.md", "openapi.json", "metrics.md", "modules.md"]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    pages: dict[Path, str] = _generator().pages()
    return pages


def test_the_generator_writes_the_committed_reference_pages(generated: dict[Path, str]) -> None:
    assert sorted(path.relative_to(REFERENCE).as_posix() for path in generated) == sorted(GENERATED)


@pytest.mark.parametrize("name", GENERATED)
def test_each_reference_page_matches_the_code(generated: dict[Path, str], name: str) -> None:
    path = REFERENCE / name
    assert path.exists(), f"docs/reference/{name} is missing: run `make docs` and commit it"
    assert path.read_text() == generated[path], f"docs/reference/{name} is out of date: run `make docs` and commit it"


def test_the_reference_pages_cover_every_subcommand_and_setting(generated: dict[Path, str]) -> None:
    from forecast.cli import build_parser
    from forecast.settings import Settings

    _parser, handlers = build_parser()
    cli = generated[REFERENCE / "cli.md"]
    for command in handlers:
        assert f"## `forecast {command}`" in cli, command
    settings = generated[REFERENCE / "settings.md"]
    for field in Settings.model_fields:
        assert f"| `FORECAST_{field.upper()}` |" in settings, field


def test_the_module_map_names_every_module_under_its_package(generated: dict[Path, str]) -> None:
    """A reader finds any module of the library or the API, and what it is for, in one page."""
    page = generated[REFERENCE / "modules.md"]
    sections = dict(re.findall(r"^## `([\w/]+)/`\n(.*?)(?=^## |\Z)", page, flags=re.MULTILINE | re.DOTALL))
    for top in ("forecast", "api"):
        for path in (ROOT / top).rglob("*.py"):
            package = path.parent.relative_to(ROOT).as_posix()
            if path.name == "__init__.py":
                assert package in sections, f"{package}/ has no section in the module map"
            else:
                assert f"| `{path.name}` |" in sections[package], f"{package}/{path.name} is not in the module map"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    config = ROOT / "mkdocs.yml"
    # Not --quiet: it hides the warnings from strict mode, which then passes a broken link.
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    for page in ("index.html", "quickstart.html", "reference/settings.html", "benchmarks.html"):
        assert (site / page).is_file(), page


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_is_one_screen_with_the_two_commands() -> None:
    readme = _readme()
    assert len(readme.splitlines()) < 150
    block = re.search(r"## Two commands\n\n```bash\n(.*?)```", readme, flags=re.DOTALL)
    assert block, "the README's '## Two commands' section"
    commands = re.findall(r"^(make \w+)", block.group(1), flags=re.MULTILINE)
    assert commands == ["make run", "make test"]


def test_the_readme_links_to_pages_that_exist_and_to_every_guide() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", _readme())
    local = [target for target in targets if "://" not in target]
    for target in local:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    pages = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*.md")}
    assert not pages - set(local), f"README does not link to {sorted(pages - set(local))}"

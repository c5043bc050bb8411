"""The Python client installs without the service: clients/python builds a wheel that holds
forecast/client/ (the repository's one copy) and requires only httpx and pandas."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_client_wheel_holds_the_client_and_needs_only_httpx_and_pandas(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT / "clients" / "python"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("forecast_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    shipped = sorted(n for n in names if n.startswith("forecast/"))
    expected = sorted(f"forecast/client/{p.name}" for p in (ROOT / "forecast" / "client").glob("*.py"))
    assert shipped == expected, "the client's modules and nothing else of the package"
    required = sorted(
        line.split()[1].split(">")[0].split("<")[0]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    )
    assert required == ["httpx", "pandas"]

"""`forecast predict` with real processes: the table it writes equals the API's forecasts for the
same version, series by series; a file with bad series still scores the others, lists the bad
ones with their reason and exits 1; nothing is half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.servers import Server, run_cli


def _api_forecast(server: Server, frame: pd.DataFrame, model: str, levels: list[float]) -> dict[str, dict]:
    series = [
        {"id": sid, "timestamps": rows.timestamp.tolist(), "values": rows.value.tolist()}
        for sid, rows in frame.groupby("series_id", sort=False)
    ]
    with server.client() as client:
        response = client.post("/v1/forecast", json={"model": model, "levels": levels, "series": series})
    assert response.status_code == 200, response.text
    return {f["id"]: f for f in response.json()["forecasts"]}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_predict_writes_what_the_api_answers(
    shared_server: Server, registry_template: Path, history_csv: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"forecasts{suffix}"
    result = run_cli(
        "predict",
        "--data",
        str(history_csv),
        "--name",
        "demo-lstm",
        "--out",
        str(out),
        "--quiet",
        registry=registry_template,
    )
    assert result.returncode == 0 and "forecast 2 series x 12 steps" in result.stdout, result.stdout
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, parse_dates=["timestamp"])
    assert list(table.columns) == [
        "series_id",
        "timestamp",
        "demo-lstm",
        "demo-lstm-lo-80",
        "demo-lstm-hi-80",
        "demo-lstm-lo-95",
        "demo-lstm-hi-95",
    ]
    served = _api_forecast(shared_server, pd.read_csv(history_csv), "demo-lstm", [80, 95])
    assert list(table.series_id.unique()) == list(served)
    for sid, rows in table.groupby("series_id", sort=False):
        answer = served[sid]
        assert [t.isoformat() for t in rows.timestamp] == answer["timestamps"]
        np.testing.assert_allclose(rows["demo-lstm"], answer["mean"], rtol=1e-9)
        np.testing.assert_allclose(rows["demo-lstm-lo-95"], answer["intervals"]["95"]["lower"], rtol=1e-9)
        np.testing.assert_allclose(rows["demo-lstm-hi-80"], answer["intervals"]["80"]["upper"], rtol=1e-9)
    assert not (tmp_path / f"forecasts{suffix}.failed.csv").exists()


def test_bad_series_are_listed_with_their_reason_and_the_rest_still_scored(
    registry_template: Path, history_csv: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(history_csv)
    stamps = pd.date_range("2024-01-01", periods=30, freq="h").astype(str)
    empty = pd.DataFrame({"series_id": "empty", "timestamp": stamps, "value": np.nan})
    infinite = pd.DataFrame({"series_id": "infinite", "timestamp": stamps, "value": [1.0] * 29 + [np.inf]})
    data = tmp_path / "mixed.csv"
    pd.concat([frame, empty, infinite]).to_csv(data, index=False)
    out = tmp_path / "out.csv"
    result = run_cli(
        "predict",
        "--data",
        str(data),
        "--name",
        "demo-lstm",
        "--out",
        str(out),
        "--levels",
        "--quiet",
        registry=registry_template,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "2 series not forecast" in result.stderr
    assert sorted(pd.read_csv(out).series_id.unique()) == ["a", "b"]
    assert list(pd.read_csv(out).columns) == ["series_id", "timestamp", "demo-lstm"]  # no levels asked
    failed = pd.read_csv(tmp_path / "out.csv.failed.csv").set_index("series_id")["reason"]
    assert sorted(failed.index) == ["empty", "infinite"]
    assert "no observed value" in failed["empty"] and "infinite" in failed["infinite"]


def test_a_refused_file_leaves_the_previous_table_untouched(registry_template: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    result = run_cli(
        "predict",
        "--data",
        str(tmp_path / "missing.csv"),
        "--name",
        "demo-lstm",
        "--out",
        str(out),
        registry=registry_template,
        check=False,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert out.read_text() == "previous\n"
    wrong = run_cli(
        "predict",
        "--data",
        str(tmp_path / "missing.csv"),
        "--name",
        "demo-lstm",
        "--out",
        str(tmp_path / "out.xlsx"),
        registry=registry_template,
        check=False,
    )
    assert wrong.returncode == 2 and "write .csv or .parquet" in wrong.stderr

"""Settings: FORECAST_* environment variables are read and validated at start-up (a bad value fails
fast, naming the setting), and the defaults are the ones the settings reference documents
(docs/reference/settings.md, written from Settings by docs/gen_reference.py; tests/test_docs.py keeps it current)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from forecast.settings import DEFAULT_MAX_BATCH_SIZE, Settings, get_settings, max_batch_size

SETTINGS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "settings.md"
# Fields that are deliberately not in the settings reference, with the reason.
UNDOCUMENTED: dict[str, str] = {}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FORECAST_* variable of the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("FORECAST_"):
            monkeypatch.delenv(name)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_REGISTRY", "/srv/models")
    monkeypatch.setenv("FORECAST_DEVICE", "cpu")
    monkeypatch.setenv("FORECAST_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("FORECAST_MAX_WAIT_MS", "0.5")
    monkeypatch.setenv("FORECAST_QUEUE_LIMIT", "10")
    monkeypatch.setenv("FORECAST_RELOAD_SECONDS", "7.5")
    monkeypatch.setenv("FORECAST_MAX_POINTS_PER_SERIES", "123")
    settings = Settings()
    assert settings.registry == "/srv/models"
    assert settings.device == "cpu"
    assert settings.max_batch_size == 32
    assert settings.max_wait_ms == 0.5
    assert settings.queue_limit == 10
    assert settings.reload_seconds == 7.5
    assert settings.max_points_per_series == 123


def test_a_batch_size_of_one_is_allowed_to_turn_batching_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_MAX_BATCH_SIZE", "1")
    assert max_batch_size(Settings(), "cpu") == max_batch_size(Settings(), "cuda") == 1


def test_the_batch_size_defaults_to_the_devices_and_a_set_value_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_batch_size(Settings(), "cpu") == 64
    assert max_batch_size(Settings(), "cuda") == 256  # a GPU forward costs about the same at 256 as at 64
    monkeypatch.setenv("FORECAST_MAX_BATCH_SIZE", "32")
    assert max_batch_size(Settings(), "cuda") == 32


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("FORECAST_MAX_BATCH_SIZE", "0", "max_batch_size"),
        ("FORECAST_MAX_BATCH_SIZE", "many", "max_batch_size"),
        ("FORECAST_DEVICE", "tpu", "device"),
        ("FORECAST_MAX_WAIT_MS", "-1", "max_wait_ms"),
        ("FORECAST_QUEUE_LIMIT", "0", "queue_limit"),
        ("FORECAST_RELOAD_SECONDS", "0", "reload_seconds"),
        ("FORECAST_REQUEST_TIMEOUT_S", "-5", "request_timeout_s"),
        ("FORECAST_MAX_BODY_BYTES", "10", "max_body_bytes"),
    ],
)
def test_a_bad_value_fails_fast_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


def test_cors_origins_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_CORS_ORIGINS", "http://a, http://b ,,")
    assert Settings().cors_origins == ["http://a", "http://b"]


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.max_batch_size = 2  # type: ignore[misc]


def test_get_settings_is_one_cached_object() -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def _documented_defaults() -> dict[str, str]:
    """field name -> the default cell of the settings reference's table."""
    rows = re.findall(r"^\| `FORECAST_(\w+)` \| ([^|]*) \|", SETTINGS_PAGE.read_text(), flags=re.MULTILINE)
    assert rows, "the settings reference has no table"
    return {name.lower(): cell.strip().strip("`") for name, cell in rows}


def _as_documented(field: str, value: object) -> object:
    """How the reference writes a default: numbers as numbers, an empty list as (none), a
    device-dependent default as '64 (CPU), 256 (CUDA)'."""
    if field == "max_batch_size" and value is None:
        return ", ".join(f"{size} ({device.upper()})" for device, size in DEFAULT_MAX_BATCH_SIZE.items())
    if value is None or value == []:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def test_documented_defaults_match_the_code() -> None:
    documented = _documented_defaults()
    defaults = Settings()
    for field, cell in documented.items():
        assert field in Settings.model_fields, f"the reference documents FORECAST_{field.upper()}, which Settings lacks"
        expected = _as_documented(field, getattr(defaults, field))
        written = float(cell) if isinstance(expected, float) else cell
        assert written == expected, f"FORECAST_{field.upper()}: the reference says {cell}, code says {expected}"


def test_every_setting_is_documented() -> None:
    missing = set(Settings.model_fields) - set(_documented_defaults()) - set(UNDOCUMENTED)
    assert not missing, f"settings missing from the settings reference: {sorted(missing)}"


def test_the_registry_fault_settings_are_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_LOAD_RETRY_MAX_S", "60")
    monkeypatch.setenv("FORECAST_MAX_LOADED_VERSIONS", "3")
    monkeypatch.setenv("FORECAST_IDLE_UNLOAD_S", "0")  # 0: unload an unaliased version at the next poll
    settings = Settings()
    assert (settings.load_retry_max_s, settings.max_loaded_versions, settings.idle_unload_s) == (60.0, 3, 0.0)
    for variable, value, field in [
        ("FORECAST_LOAD_RETRY_MAX_S", "0", "load_retry_max_s"),
        ("FORECAST_MAX_LOADED_VERSIONS", "0", "max_loaded_versions"),
        ("FORECAST_IDLE_UNLOAD_S", "-1", "idle_unload_s"),
    ]:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ValidationError) as refused:
            Settings()
        assert [error["loc"] for error in refused.value.errors()] == [(field,)]
        monkeypatch.delenv(variable)


def test_the_worker_count_is_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().workers == 0  # one per usable core (api/runtime/workers.py)
    monkeypatch.setenv("FORECAST_WORKERS", "4")
    assert Settings().workers == 4
    for refused_value in ("-1", "257", "two"):
        monkeypatch.setenv("FORECAST_WORKERS", refused_value)
        with pytest.raises(ValidationError) as refused:
            Settings()
        assert [error["loc"] for error in refused.value.errors()] == [("workers",)]

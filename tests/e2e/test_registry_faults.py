"""The registry's last good state keeps serving: real server processes against a registry that
is renamed away, emptied, given torn and hostile alias files, copied folders, lying manifests,
late weights and broken versions. For each: the right status and a small JSON body, /healthz
answering quickly meanwhile, no request for a served model lost, readiness saying what is
degraded, and the server serving the registry again once the fault is gone."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from api.http.schemas import ModelList
from tests.support.servers import Server, run_cli, series_payload, wait_until

RELOAD_S = "0.2"
FAULT_TIMEOUT_S = 30.0  # a poll is 0.2 s; loads and a loaded machine take the rest
LIVENESS_S = 1.0  # /healthz must answer within this while the registry misbehaves
SMALL_BODY = 2000  # bytes: an error body names the problem, it does not dump files


class Probe:
    """A client that checks, on every call, that the server stays live and that forecasts for
    the models it serves keep succeeding while a fault lasts."""

    def __init__(self, server: Server, history_csv: Path) -> None:
        self.client = server.client()
        self.series = [series_payload(history_csv, "a")]
        self.slowest_healthz_s = 0.0
        self.lost: list[str] = []

    def live(self) -> None:
        started = time.monotonic()
        assert self.client.get("/healthz").status_code == 200
        self.slowest_healthz_s = max(self.slowest_healthz_s, time.monotonic() - started)

    def forecast(self, model: str, **selector: object) -> httpx.Response:
        return self.client.post("/v1/forecast", json={"model": model, "series": self.series, **selector})

    def served_version(self, model: str, **selector: object) -> int | None:
        """The version that answered, recording any failure as a lost request."""
        response = self.forecast(model, **selector)
        if response.status_code != 200:
            self.lost.append(f"{model} {selector}: {response.status_code} {response.text[:200]}")
            return None
        return int(response.json()["model"]["version"])

    def ready(self) -> dict[str, Any]:
        self.live()
        response = self.client.get("/readyz")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def until(self, condition: Callable[[dict[str, Any]], object], what: str) -> dict[str, Any]:
        """Poll readiness (checking liveness and the served models each time) until it holds."""

        def check() -> dict[str, Any] | None:
            for model in ("demo-lstm", "demo-gru"):
                self.served_version(model)
            body = self.ready()
            return body if condition(body) else None

        result: dict[str, Any] = wait_until(check, FAULT_TIMEOUT_S, what, interval_s=0.1)
        return result

    def metric(self, name: str) -> float:
        text = self.client.get("/metrics").text
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert found, f"{name} not in /metrics"
        return float(found.group(1))

    def assert_nothing_lost(self) -> None:
        assert self.lost == [], self.lost
        assert self.slowest_healthz_s < LIVENESS_S, f"/healthz took {self.slowest_healthz_s:.2f}s"


def write_aliases(registry: Path, name: str, aliases: dict[str, int]) -> None:
    """As `forecast models promote` writes them: a temporary file renamed over the old one."""
    temporary = registry / name / ".aliases-test.json"
    temporary.write_text(json.dumps(aliases))
    os.replace(temporary, registry / name / "aliases.json")


def copy_version(registry: Path, source: tuple[str, int], target: tuple[str, int], **manifest: Any) -> Path:
    """A version folder copied as an operator would, its manifest edited with `manifest`."""
    folder = registry / target[0] / "versions" / str(target[1])
    shutil.copytree(registry / source[0] / "versions" / str(source[1]), folder)
    if manifest:
        edit_manifest(folder, **manifest)
    return folder


def edit_manifest(folder: Path, **changes: Any) -> None:
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def problem_of(body: dict[str, Any], model: str, alias: str | None) -> dict[str, Any] | None:
    return next((p for p in body["problems"].get(model, []) if p["alias"] == alias), None)


def refused(response: httpx.Response, *fragments: str) -> str:
    """A 500 registry_corrupt with a small JSON body whose message holds every fragment."""
    assert response.status_code == 500, response.text
    assert len(response.content) < SMALL_BODY, len(response.content)
    body = response.json()
    assert body["error"] == "registry_corrupt", body
    message: str = body["message"]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_a_registry_renamed_away_or_emptied_keeps_serving_and_recovers(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(registry, reload_seconds=RELOAD_S)
    probe = Probe(server, history_csv)
    away = registry.with_name("registry-away")
    errors_before = probe.metric("forecast_registry_scan_errors_total")

    registry.rename(away)
    body = probe.until(lambda b: not b["registry"]["ok"], "the unreadable registry to be reported")
    assert body["ready"] and body["degraded"]
    assert "cannot list the registry" in body["registry"]["last_error"]
    assert body["models"] == {"demo-gru": {"production": 1}, "demo-lstm": {"production": 1, "staging": 2}}
    assert probe.served_version("demo-lstm", alias="staging") == 2
    assert probe.served_version("demo-lstm", version=2) == 2
    listing = probe.client.get("/v1/models")
    assert listing.status_code == 200
    assert [m.name for m in ModelList.model_validate(listing.json()).models] == ["demo-gru", "demo-lstm"]
    assert probe.client.get("/v1/models/demo-lstm/versions/1").json()["version"] == 1
    assert probe.metric("forecast_registry_last_scan_ok") == 0
    assert probe.metric("forecast_registry_scan_errors_total") > errors_before

    registry.mkdir()  # an empty mount point in its place: no change either
    probe.until(lambda b: "holds no models" in str(b["registry"]["last_error"]), "the empty registry")
    assert probe.served_version("demo-gru") == 1

    registry.rmdir()
    away.rename(registry)
    probe.until(lambda b: b["registry"]["ok"] and not b["degraded"], "the registry to be readable again")
    assert probe.metric("forecast_registry_last_scan_ok") == 1
    run_cli("models", "promote", "demo-lstm", "2", registry=registry)
    wait_until(lambda: probe.served_version("demo-lstm") == 2, FAULT_TIMEOUT_S, "hot reload after recovery")
    probe.assert_nothing_lost()


HOSTILE = [
    ("truncated", lambda path: path.write_text('{"production": 2, "stag'), "aliases.json is unreadable"),
    ("empty", lambda path: path.write_text(""), "aliases.json is unreadable"),
    ("string-version", lambda path: path.write_text('{"production": "2"}'), "must map alias names"),
    ("path-alias", lambda path: path.write_text('{"../../etc": 2}'), "invalid alias name"),
    ("deeply-nested", lambda path: path.write_text("[" * 200_000), "aliases.json is unreadable"),
    ("fifo", lambda path: (path.unlink(), os.mkfifo(path)), "not a regular file"),
    ("huge", lambda path: (path.unlink(missing_ok=True), path.write_bytes(b" " * (8 << 20))), "allowed"),
]


def test_torn_and_hostile_aliases_files_change_nothing_and_keep_the_listing_up(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(registry, reload_seconds=RELOAD_S)
    probe = Probe(server, history_csv)
    path = registry / "demo-lstm" / "aliases.json"

    for label, damage, expected in HOSTILE:
        damage(path)
        body = probe.until(
            lambda b, expected=expected: expected in str((problem_of(b, "demo-lstm", None) or {}).get("error")),
            f"the {label} aliases.json to be reported",
        )
        assert body["models"]["demo-lstm"] == {"production": 1, "staging": 2}, label
        assert len(json.dumps(body)) < 4 * SMALL_BODY, label
        assert probe.served_version("demo-lstm", alias="staging") == 2
        listing = probe.client.get("/v1/models")
        assert listing.status_code == 200, (label, listing.text[:300])
        models = {m.name: m for m in ModelList.model_validate(listing.json()).models}
        assert set(models) == {"demo-gru", "demo-lstm"}, label
        assert models["demo-lstm"].aliases == {"production": 1, "staging": 2}, "the last good aliases"
        assert probe.client.get("/v1/models/demo-lstm").status_code == 200
        if path.is_fifo():
            path.unlink()

    # The editor finishes its non-atomic write, in place: the move it meant is applied.
    path.unlink(missing_ok=True)
    path.write_text(json.dumps({"production": 2, "staging": 2}))
    probe.until(lambda b: b["models"]["demo-lstm"]["production"] == 2 and not b["problems"], "the repaired aliases")
    assert probe.served_version("demo-lstm") == 2
    probe.assert_nothing_lost()


def test_copied_folders_and_lying_manifests_are_refused_naming_the_folder(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    # At start-up: a whole model copied under another name.
    shutil.copytree(registry / "demo-gru", registry / "demo-copy")
    server = server_factory(registry, reload_seconds=RELOAD_S)
    probe = Probe(server, history_csv)
    message = refused(probe.forecast("demo-copy"), "describes model 'demo-gru' version 1", "demo-copy/versions/1")
    assert "demo-copy" in message

    # While serving: a version copied under another number, and two whose features lie.
    copy_version(registry, ("demo-lstm", 1), ("demo-lstm", 3))
    fewer = copy_version(registry, ("demo-lstm", 1), ("demo-lstm", 4), version=4, features=["hour_of_day"])
    made_up = json.loads((registry / "demo-lstm" / "versions" / "1" / "manifest.json").read_text())["features"]
    made_up = [*made_up[:-1], "phase_of_moon"]  # same width: the weights alone would fit
    copy_version(registry, ("demo-lstm", 1), ("demo-lstm", 5), version=5, features=made_up)
    write_aliases(registry, "demo-lstm", {"production": 1, "staging": 2, "canary": 3})

    body = probe.until(lambda b: problem_of(b, "demo-lstm", "canary"), "the canary's refusal to be reported")
    canary = problem_of(body, "demo-lstm", "canary")
    assert canary is not None and (canary["wanted"], canary["served"]) == (3, None)
    assert "describes model 'demo-lstm' version 1" in canary["error"]
    copy = problem_of(body, "demo-copy", "production")
    assert copy is not None and copy["served"] is None
    refused(probe.forecast("demo-lstm", alias="canary"), "alias 'canary' cannot be served")
    refused(probe.forecast("demo-lstm", version=3), "demo-lstm/versions/3", "describes model 'demo-lstm' version 1")
    refused(probe.forecast("demo-lstm", version=4), str(fewer), "input channels")
    refused(probe.forecast("demo-lstm", version=5), "demo-lstm/versions/5", "unknown calendar features")
    listing = ModelList.model_validate(probe.client.get("/v1/models").json())
    versions = {m.name: [v.version for v in m.versions] for m in listing.models}
    assert versions == {"demo-gru": [1], "demo-lstm": [1, 2]}, "a lying version is not listed as usable"

    # Fixed on disk (the copy renamed in its manifest): served at once, without a restart.
    edit_manifest(registry / "demo-copy" / "versions" / "1", name="demo-copy")
    wait_until(lambda: probe.forecast("demo-copy").status_code == 200, FAULT_TIMEOUT_S, "the fixed copy to serve")
    assert probe.forecast("demo-copy").json()["model"] == {"name": "demo-copy", "version": 1, "arch": "gru"}
    probe.assert_nothing_lost()


def test_weights_that_arrive_after_their_manifest_are_served_once_they_are_whole(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(registry, reload_seconds=RELOAD_S)
    probe = Probe(server, history_csv)
    # A copy tool that writes the manifest first and the weights a while later.
    folder = registry / "demo-gru" / "versions" / "2"
    folder.mkdir()
    source = registry / "demo-gru" / "versions" / "1"
    shutil.copy(source / "report.json", folder)
    (folder / "manifest.json").write_text(
        json.dumps({**json.loads((source / "manifest.json").read_text()), "version": 2})
    )
    write_aliases(registry, "demo-gru", {"production": 2})

    body = probe.until(lambda b: problem_of(b, "demo-gru", "production"), "the missing weights to be reported")
    problem = problem_of(body, "demo-gru", "production")
    assert problem is not None and (problem["wanted"], problem["served"]) == (2, 1)
    assert "cannot read model.safetensors" in problem["error"]
    assert probe.served_version("demo-gru") == 1, "the working version serves meanwhile"
    first_scan = probe.metric("forecast_registry_last_good_scan_timestamp_seconds")
    probe.until(
        lambda b: probe.metric("forecast_registry_last_good_scan_timestamp_seconds") > first_scan + 1.0,
        "five more polls",
    )
    assert probe.metric('forecast_model_load_failures_total{model="demo-gru"}') == 1, "counted once, not per poll"

    shutil.copy(source / "model.safetensors", folder)
    wait_until(lambda: probe.served_version("demo-gru") == 2, FAULT_TIMEOUT_S, "version 2 once its weights are whole")
    assert probe.ready()["problems"] == {}
    assert server.log_text().count("version 2 of demo-gru failed to load") == 1, "logged once"
    probe.assert_nothing_lost()


def test_broken_versions_at_start_up_are_confined_and_hot_reload_goes_on(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    """A manifest whose frequency no series can have: its weights fit, so it loads, and the
    warm-up through the request path raises pandas' own error (not a ForecastError)."""
    copy_version(registry, ("demo-gru", 1), ("demo-gru", 2), version=2, freq="fortnightly")
    write_aliases(registry, "demo-gru", {"production": 1, "staging": 2})
    shutil.copytree(registry / "demo-gru", registry / "demo-odd", ignore=shutil.ignore_patterns("1"))
    shutil.move(registry / "demo-odd" / "versions" / "2", registry / "demo-odd" / "versions" / "1")
    edit_manifest(registry / "demo-odd" / "versions" / "1", name="demo-odd", version=1)
    write_aliases(registry, "demo-odd", {"production": 1})

    server = server_factory(registry, reload_seconds=RELOAD_S)  # ready: it did not crash-loop
    probe = Probe(server, history_csv)
    body = probe.ready()
    assert body["models"]["demo-gru"] == {"production": 1} and body["models"]["demo-odd"] == {}
    assert "fortnightly" in problem_of(body, "demo-odd", "production")["error"]  # type: ignore[index]
    refused(probe.forecast("demo-odd"), "alias 'production' cannot be served", "fortnightly")
    refused(probe.forecast("demo-gru", alias="staging"), "fortnightly")

    run_cli("models", "promote", "demo-lstm", "2", registry=registry)
    wait_until(lambda: probe.served_version("demo-lstm") == 2, FAULT_TIMEOUT_S, "hot reload beside broken versions")

    edit_manifest(registry / "demo-odd" / "versions" / "1", freq="h")
    wait_until(lambda: probe.forecast("demo-odd").status_code == 200, FAULT_TIMEOUT_S, "the repaired version")
    assert probe.ready()["problems"].keys() == {"demo-gru"}
    probe.assert_nothing_lost()


def test_a_version_asked_for_by_number_stays_loaded_while_used_then_is_unloaded_when_idle(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    # A model nobody has aliased: it is served only by number.
    shutil.copytree(registry / "demo-gru", registry / "demo-plain")
    (registry / "demo-plain" / "aliases.json").unlink()
    edit_manifest(registry / "demo-plain" / "versions" / "1", name="demo-plain")
    server = server_factory(registry, reload_seconds=RELOAD_S, idle_unload_s="3")
    probe = Probe(server, history_csv)

    assert probe.forecast("demo-plain").status_code == 404
    first_scan = probe.metric("forecast_registry_last_good_scan_timestamp_seconds")
    while probe.metric("forecast_registry_last_good_scan_timestamp_seconds") < first_scan + 1.5:
        assert probe.served_version("demo-plain", version=1) == 1  # several polls, requests between
    loads = re.findall(r"(?<!un)loaded demo-plain version 1 on", server.log_text())
    assert len(loads) == 1, "reloaded (and re-hashed) per request"

    wait_until(lambda: "unloaded demo-plain version 1" in server.log_text(), FAULT_TIMEOUT_S, "the idle unload")
    assert probe.served_version("demo-plain", version=1) == 1, "loaded again on demand"
    probe.assert_nothing_lost()

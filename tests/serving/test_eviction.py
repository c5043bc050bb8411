"""One unload rule for every loaded version: held ones (aliased, leased) stay; the others go
once idle, and beyond the cap the least recently used go first."""

from __future__ import annotations

from forecast.serving.eviction import versions_to_unload


def used(**ages: float) -> dict[tuple[str, int], float]:
    """Versions of model m by number, last used `age` seconds before t=1000."""
    return {("m", int(key.removeprefix("v"))): 1000.0 - age for key, age in ages.items()}


def test_idle_versions_go_and_recent_ones_stay() -> None:
    victims = versions_to_unload(used(v1=500, v2=10), set(), now=1000.0, idle_s=300.0, cap=8)
    assert victims == [("m", 1)]


def test_held_versions_stay_however_idle_and_however_many() -> None:
    loaded = used(v1=900, v2=800, v3=700)
    assert versions_to_unload(loaded, set(loaded), now=1000.0, idle_s=0.0, cap=1) == []


def test_beyond_the_cap_the_least_recently_used_unheld_go_first() -> None:
    loaded = used(v1=50, v2=40, v3=30, v4=20, v5=10)
    victims = versions_to_unload(loaded, {("m", 1)}, now=1000.0, idle_s=300.0, cap=3)
    assert victims == [("m", 2), ("m", 3)], "v1 is the oldest but held (aliased)"


def test_idle_ones_count_toward_getting_under_the_cap() -> None:
    loaded = used(v1=400, v2=40, v3=30)
    assert versions_to_unload(loaded, set(), now=1000.0, idle_s=300.0, cap=2) == [("m", 1)]

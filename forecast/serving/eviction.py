"""Which loaded versions to unload: one rule for every version.

Aliased versions and versions a request holds always stay. Any other version (one asked for by
number, or one that lost its alias) stays while it was used within `idle_s`, and beyond `cap`
loaded versions the least recently used of them go first.
"""

from __future__ import annotations

from collections.abc import Mapping

from forecast.serving.failures import VersionKey


def versions_to_unload(
    last_used: Mapping[VersionKey, float],
    held: set[VersionKey],
    *,
    now: float,
    idle_s: float,
    cap: int,
) -> list[VersionKey]:
    """`last_used`: every loaded version's last use (time.monotonic()); `held`: the aliased and
    leased ones. Idle versions first, then the least recently used while over the cap."""
    spare = sorted((used, key) for key, used in last_used.items() if key not in held)
    victims = [key for used, key in spare if now - used >= idle_s]
    over = len(last_used) - len(victims) - cap
    victims += [key for _, key in spare if key not in victims][: max(over, 0)]
    return victims

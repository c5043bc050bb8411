"""The registry's names and keys: safe model and alias names, version numbers as publish
writes them, the keys of the layout under the root, and aliases.json read as hostile input.

    <root>/<name>/versions/<N>/manifest.json | model.safetensors | report.json
    <root>/<name>/aliases.json
"""

from __future__ import annotations

import json
import re

from forecast.errors import InvalidName, RegistryCorrupt, VersionNotFound

PRODUCTION = "production"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A version folder's name is its number as publish writes it: "0003" or a non-ASCII digit would
# parse as another version's number and answer for it.
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,17}$")


def check_name(name: str, what: str = "model name") -> str:
    """Names become path components: allow only a safe alphabet so none can leave the registry."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def aliased_version(name: str, aliases: dict[str, int], alias: str | None) -> int:
    """The version an alias points at; no alias means production. The registry resolves on
    what is on disk, the engine on what it serves: both by this rule."""
    wanted = check_name(alias, "alias") if alias is not None else PRODUCTION
    if wanted not in aliases:
        raise VersionNotFound(f"model {name!r} has no alias {wanted!r}; aliases: {sorted(aliases)}")
    return aliases[wanted]


def version_key(name: str, version: int) -> str:
    return f"{check_name(name)}/versions/{version}"


def aliases_key(name: str) -> str:
    return f"{check_name(name)}/aliases.json"


def parse_aliases(name: str, payload: bytes) -> dict[str, int]:
    """aliases.json's mapping, as set_alias writes it; RegistryCorrupt for anything else."""
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise RegistryCorrupt(f"model {name!r}: aliases.json is unreadable ({exc})") from exc
    if not isinstance(raw, dict) or not all(type(version) is int and version >= 1 for version in raw.values()):
        shown = repr(raw)[:200]
        raise RegistryCorrupt(f"model {name!r}: aliases.json must map alias names to version numbers; got {shown}")
    for alias in raw:
        if not NAME_PATTERN.fullmatch(alias) or ".." in alias:
            raise RegistryCorrupt(f"model {name!r}: aliases.json holds an invalid alias name {alias[:80]!r}")
    return dict(raw)

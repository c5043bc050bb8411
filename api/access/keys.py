"""API keys: the keys FORECAST_API_KEYS names, what each may do, and the check of a presented key.

FORECAST_API_KEYS holds the keys themselves, comma-separated, each `KEY`, `NAME:KEY` or
`NAME:SCOPE:KEY`; or, when it contains a `/`, the path of a key file of salted hashes, one line
per key (blank lines and lines starting with `#` are skipped):

    # name      scope     key id        hash
    dashboard   read      3f9a0c1b2d4e  scrypt$16384$8$1$<salt, hex>$<hash, hex>

A hashed key reads `KEY_ID.SECRET`. Its id finds its line, so a key the file does not know costs
no hashing, and a verified key is remembered by its SHA-256, so scrypt runs once per key and
process, not once per request. `python -m api.access.keys hash NAME SCOPE` makes a new key: the line
for the file on stdout, the key (shown once, stored nowhere) on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from forecast.errors import InvalidSetting

SETTING = "FORECAST_API_KEYS"
# scrypt's interactive-login cost (N=2^14, r=8: 16 MiB, some 50 ms on one core). The keys this
# module makes carry 256 random bits, so the cost is a second line of defence for a leaked file.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAX_BYTES = 256 * 1024 * 1024  # 128 * r * N bytes; larger parameters are refused at start-up
_HASH_BYTES = 32
_MIN_SALT_BYTES = 16
# A shorter inline key could be guessed; the generated ones are 56 characters.
MIN_KEY_CHARS = 16
# Longer Authorization values are refused before any hashing.
MAX_PRESENTED_CHARS = 512
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY_ID = re.compile(r"[0-9a-f]{12}")
# RFC 6750's b64token less `/` (a value holding `/` is a file's path) and `,` `:` (separators).
_INLINE_KEY = re.compile(r"[A-Za-z0-9._~+-]+=*")


class KeyScope(StrEnum):
    """What a key may do. `forecast`: POST /v1/forecast. `read`: that, and read the registry
    (GET /v1/models...), /metrics and /docs when they are not public."""

    FORECAST = "forecast"
    READ = "read"

    def grants(self, needed: KeyScope) -> bool:
        return self is KeyScope.READ or needed is KeyScope.FORECAST


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who a verified key belongs to: its name (for logs and rate limits) and its scope."""

    name: str
    scope: KeyScope


@dataclass(frozen=True, slots=True)
class _PlainKey:
    key: ApiKey
    digest: bytes  # SHA-256 of the key: equal lengths, so compare_digest's time says nothing


@dataclass(frozen=True, slots=True)
class _HashedKey:
    key: ApiKey
    key_id: str
    n: int
    r: int
    p: int
    salt: bytes
    hash: bytes

    def matches(self, presented: str) -> bool:
        """Hashing is the comparison: a wrong key gives another hash, compared in constant time."""
        computed = scrypt(presented, self.salt, self.n, self.r, self.p)
        return hmac.compare_digest(computed, self.hash)


def scrypt(key: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAX_BYTES, dklen=_HASH_BYTES)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The keys the server accepts, and the check of a presented one."""

    def __init__(self, plain: list[_PlainKey] | None = None, hashed: list[_HashedKey] | None = None) -> None:
        self._plain = plain or []
        self._hashed = {entry.key_id: entry for entry in hashed or []}
        # Only verified keys enter, so this holds at most one entry per line of the key file.
        self._verified: dict[bytes, ApiKey] = {}
        # One scrypt at a time: a flood of wrong secrets for a known key id costs one core at
        # most, not the inference thread's too.
        self._hashing = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._plain) + len(self._hashed)

    async def verify(self, presented: str) -> ApiKey | None:
        """The key `presented` belongs to, or None. Runs scrypt (in a worker thread) only for a
        hashed key not yet seen by this process."""
        if not presented or len(presented) > MAX_PRESENTED_CHARS or not presented.isascii():
            return None
        digest = _digest(presented)
        match = self._match_plain(digest)
        if match is not None or not self._hashed:
            return match
        # A dict probe on the digest: its timing tells nothing about the key (SHA-256 preimages).
        if (known := self._verified.get(digest)) is not None:
            return known
        key_id, dot, _ = presented.partition(".")
        entry = self._hashed.get(key_id) if dot else None
        if entry is None:
            return None
        async with self._hashing:
            if (known := self._verified.get(digest)) is not None:  # verified while this waited
                return known
            if not await asyncio.to_thread(entry.matches, presented):
                return None
        self._verified[digest] = entry.key
        return entry.key

    def _match_plain(self, digest: bytes) -> ApiKey | None:
        found = None
        for entry in self._plain:  # every entry, no early exit: the time does not say which matched
            if hmac.compare_digest(entry.digest, digest):
                found = entry.key
        return found


def load_keys(setting: str | None) -> KeyRing | None:
    """The key ring FORECAST_API_KEYS describes; None when it is unset or empty (the API is open).
    A bad value raises InvalidSetting, one line that never quotes a key."""
    value = (setting or "").strip()
    if not value:
        return None
    if "/" in value:
        return KeyRing(hashed=parse_key_file(Path(value).expanduser()))
    return KeyRing(plain=parse_inline_keys(value))


def _scope(text: str, where: str) -> KeyScope:
    try:
        return KeyScope(text)
    except ValueError:
        known = ", ".join(scope.value for scope in KeyScope)
        raise InvalidSetting(f"{where}: unknown scope {text[:20]!r}; use one of {known}") from None


def _check_name(name: str, where: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidSetting(
            f"{where}: a key's name is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def _check_unique(keys: list[ApiKey], where: str) -> None:
    names = [key.name for key in keys]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidSetting(f"{where}: the names {repeated} appear more than once; each key needs its own name")


def parse_inline_keys(value: str) -> list[_PlainKey]:
    """`KEY`, `NAME:KEY` or `NAME:SCOPE:KEY`, comma-separated. An unnamed key is called key-N
    (its position); the scope defaults to read (the whole API, as without keys)."""
    entries: list[_PlainKey] = []
    for position, text in enumerate((part.strip() for part in value.split(",") if part.strip()), start=1):
        where = f"{SETTING} entry {position}"
        parts = text.split(":")
        if len(parts) > 3:
            raise InvalidSetting(f"{where}: expected KEY, NAME:KEY or NAME:SCOPE:KEY, found {len(parts)} ':'-parts")
        key = parts[-1]
        name = _check_name(parts[0], where) if len(parts) > 1 else f"key-{position}"
        scope = _scope(parts[1], where) if len(parts) == 3 else KeyScope.READ
        where = f"{where} ({name})"
        if len(key) < MIN_KEY_CHARS:
            raise InvalidSetting(
                f"{where}: the key has {len(key)} characters; use at least {MIN_KEY_CHARS} "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"
            )
        if not _INLINE_KEY.fullmatch(key):
            raise InvalidSetting(f"{where}: a key holds letters, digits and - . _ ~ + only (and = at its end)")
        entries.append(_PlainKey(ApiKey(name, scope), _digest(key)))
    if not entries:
        raise InvalidSetting(f"{SETTING} holds no keys; leave it unset for an open API")
    _check_unique([entry.key for entry in entries], SETTING)
    digests = [entry.digest for entry in entries]
    if len(set(digests)) < len(digests):
        raise InvalidSetting(f"{SETTING}: two entries hold the same key; give each client its own")
    return entries


def parse_key_file(path: Path) -> list[_HashedKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidSetting(f"{SETTING}: cannot read the key file {path}: {reason}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(_parse_line(line, f"{SETTING} file {path} line {number}"))
    if not entries:
        raise InvalidSetting(
            f"{SETTING}: the key file {path} holds no keys; add one with `python -m api.access.keys hash NAME SCOPE`"
        )
    _check_unique([entry.key for entry in entries], f"{SETTING} file {path}")
    ids = [entry.key_id for entry in entries]
    if len(set(ids)) < len(ids):
        raise InvalidSetting(
            f"{SETTING} file {path}: a key id appears twice; make each key with python -m api.access.keys"
        )
    return entries


def _parse_line(line: str, where: str) -> _HashedKey:
    fields = line.split()
    if len(fields) != 4:
        raise InvalidSetting(f"{where}: expected NAME SCOPE KEY_ID HASH, found {len(fields)} fields")
    name, scope_text, key_id, hashed = fields
    key = ApiKey(_check_name(name, where), _scope(scope_text, where))
    if not _KEY_ID.fullmatch(key_id):
        raise InvalidSetting(f"{where}: the key id is 12 hex digits (the part of the key before its '.')")
    parts = hashed.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise InvalidSetting(
            f"{where}: the hash reads scrypt$N$R$P$SALT$HASH (python -m api.access.keys hash makes it)"
        )
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise InvalidSetting(f"{where}: N, R and P are integers, SALT and HASH hex digits") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or p > 16 or 128 * r * n > _SCRYPT_MAX_BYTES // 2:
        raise InvalidSetting(f"{where}: scrypt parameters N={n} r={r} p={p} are out of range (N a power of two)")
    if len(salt) < _MIN_SALT_BYTES or len(digest) != _HASH_BYTES:
        raise InvalidSetting(f"{where}: the salt is at least {_MIN_SALT_BYTES} bytes and the hash {_HASH_BYTES}")
    return _HashedKey(key, key_id, n, r, p, salt, digest)


def new_hashed_key(name: str, scope: KeyScope) -> tuple[str, str]:
    """A new random key and its key-file line: (line, key)."""
    key_id = secrets.token_hex(6)
    key = f"{key_id}.{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(_MIN_SALT_BYTES)
    digest = scrypt(key, salt)
    line = f"{name} {scope.value} {key_id} scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"
    return line, key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.access.keys", description="API keys of the forecast service.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser(
        "hash",
        help="make a new key: its key-file line goes to stdout, the key itself to stderr",
        description="Append the line to the key file (python -m api.access.keys hash NAME SCOPE >> keys.txt) and "
        "give the key to the client: it is shown once and stored nowhere.",
    )
    make.add_argument("name", help="the key's name, as access logs and rate limits show it")
    make.add_argument("scope", choices=[scope.value for scope in KeyScope], help="forecast, or read (forecast too)")
    args = parser.parse_args(argv)
    try:
        name = _check_name(args.name, "NAME")
    except InvalidSetting as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    line, key = new_hashed_key(name, KeyScope(args.scope))
    print(line)
    print(f"key for {name} (shown once, stored nowhere): {key}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

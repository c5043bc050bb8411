"""API keys: FORECAST_API_KEYS's inline keys and key file are read as documented, a bad value
stops the start-up with one line that names the place and never the key, a presented key is
checked in constant time, and scrypt runs once per key, never for an unknown one."""

from __future__ import annotations

import asyncio
import hmac
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import api.access.keys
from api.access.keys import ApiKey, KeyRing, KeyScope, load_keys, new_hashed_key, parse_key_file
from api.access.middleware import PathPolicy, bearer_token
from forecast.errors import InvalidSetting

KEY_A = "a" * 20 + "-first-key"
KEY_B = "b" * 20 + "_second.key"


def verify(ring: KeyRing, presented: str) -> ApiKey | None:
    return asyncio.run(ring.verify(presented))


@pytest.fixture(scope="module")
def made() -> dict[str, tuple[str, str]]:
    """Two keys made as an operator makes them: name -> (key-file line, key)."""
    return {
        "dashboard": new_hashed_key("dashboard", KeyScope.READ),
        "batch": new_hashed_key("batch", KeyScope.FORECAST),
    }


def key_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


class ScryptCalls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = api.access.keys.scrypt

        def counted(*args: object, **kwargs: object) -> bytes:
            self.count += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(api.access.keys, "scrypt", counted)


# --- inline keys ---------------------------------------------------------------------------


def test_inline_keys_take_a_name_and_a_scope_or_default_to_read_under_their_position() -> None:
    ring = load_keys(f"{KEY_A}, batch:forecast:{KEY_B},dash:{'c' * 16}")
    assert ring is not None and len(ring) == 3
    assert verify(ring, KEY_A) == ApiKey("key-1", KeyScope.READ)
    assert verify(ring, KEY_B) == ApiKey("batch", KeyScope.FORECAST)
    assert verify(ring, "c" * 16) == ApiKey("dash", KeyScope.READ)
    assert verify(ring, KEY_A + "x") is None
    assert verify(ring, KEY_A[:-1]) is None
    assert verify(ring, "") is None


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_empty_means_an_open_api(value: str | None) -> None:
    assert load_keys(value) is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (" , ", "FORECAST_API_KEYS holds no keys; leave it unset for an open API"),
        ("short-key", "entry 1 (key-1): the key has 9 characters; use at least 16"),
        (f"ok:{KEY_A},x:admin:{KEY_B}", "entry 2: unknown scope 'admin'; use one of forecast, read"),
        (f"a:b:c:{KEY_A}", "entry 1: expected KEY, NAME:KEY or NAME:SCOPE:KEY"),
        (f"bad name:{KEY_A}", "entry 1: a key's name is 1 to 64 letters"),
        (f"same:{KEY_A},same:{KEY_B}", "the names ['same'] appear more than once"),
        (f"one:{KEY_A},two:{KEY_A}", "two entries hold the same key"),
        ("x:" + "é" * 20, "a key holds letters, digits and - . _ ~ + only"),
    ],
)
def test_a_bad_inline_value_fails_with_one_line_that_never_shows_the_key(value: str, says: str) -> None:
    with pytest.raises(InvalidSetting) as refused:
        load_keys(value)
    message = str(refused.value)
    assert message.startswith("FORECAST_API_KEYS") and says in message and "\n" not in message
    for key in (KEY_A, KEY_B, "short-key", "é" * 20):
        assert key not in message


# --- the key file --------------------------------------------------------------------------


def test_a_key_file_of_made_keys_accepts_them_with_their_names_and_scopes(
    tmp_path: Path, made: dict[str, tuple[str, str]]
) -> None:
    path = key_file(tmp_path, "# name scope key-id hash", "", made["dashboard"][0], "   ", made["batch"][0])
    ring = load_keys(str(path))
    assert ring is not None and len(ring) == 2
    assert verify(ring, made["dashboard"][1]) == ApiKey("dashboard", KeyScope.READ)
    assert verify(ring, made["batch"][1]) == ApiKey("batch", KeyScope.FORECAST)
    # The file holds no key: the line has neither the key nor its secret part.
    for line, key in made.values():
        assert key not in line and key.split(".")[1] not in line


def test_a_wrong_secret_for_a_known_key_id_is_refused(tmp_path: Path, made: dict[str, tuple[str, str]]) -> None:
    ring = KeyRing(hashed=parse_key_file(key_file(tmp_path, made["dashboard"][0])))
    key_id, secret = made["dashboard"][1].split(".")
    changed = "B" if secret.endswith("A") else "A"  # the secret is random: it may end in "A" already
    assert verify(ring, f"{key_id}.{secret[:-1]}{changed}") is None
    assert verify(ring, f"{key_id}.{secret}x") is None
    assert verify(ring, made["batch"][1]) is None  # a key of another server's file


def test_scrypt_runs_once_per_key_and_never_for_an_unknown_key_id(
    tmp_path: Path, made: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing(hashed=parse_key_file(key_file(tmp_path, made["dashboard"][0], made["batch"][0])))
    calls = ScryptCalls(monkeypatch)

    async def requests() -> list[ApiKey | None]:
        answers = [await ring.verify(made["dashboard"][1]) for _ in range(20)]
        answers += await asyncio.gather(*(ring.verify(made["batch"][1]) for _ in range(10)))  # at once
        answers += [await ring.verify(f"000000000000.{'x' * 43}"), await ring.verify("no-dot-in-this-key-at-all")]
        return answers

    answers = asyncio.run(requests())
    assert answers[:20] == [ApiKey("dashboard", KeyScope.READ)] * 20
    assert answers[20:30] == [ApiKey("batch", KeyScope.FORECAST)] * 10
    assert answers[30:] == [None, None]
    assert calls.count == 2  # one per key; the concurrent first requests waited for one hash


def test_a_wrong_secret_is_hashed_each_time_and_never_remembered(
    tmp_path: Path, made: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing(hashed=parse_key_file(key_file(tmp_path, made["dashboard"][0])))
    calls = ScryptCalls(monkeypatch)
    wrong = made["dashboard"][1][:-2] + "zz"
    assert [verify(ring, wrong) for _ in range(3)] == [None] * 3
    assert calls.count == 3
    assert verify(ring, made["dashboard"][1]) is not None


def _line(made: dict[str, tuple[str, str]]) -> list[str]:
    return made["dashboard"][0].split()


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda f: f[:3], "line 2: expected NAME SCOPE KEY_ID HASH, found 3 fields"),
        (lambda f: ["dash board", *f[1:]], "line 2: expected NAME SCOPE KEY_ID HASH, found 5 fields"),
        (lambda f: [f[0], "admin", *f[2:]], "line 2: unknown scope 'admin'"),
        (lambda f: [f[0], f[1], "XYZ", f[3]], "line 2: the key id is 12 hex digits"),
        (lambda f: [*f[:3], f[3].replace("scrypt", "pbkdf2")], "line 2: the hash reads scrypt$N$R$P$SALT$HASH"),
        (lambda f: [*f[:3], f[3][:-2] + "zz"], "line 2: N, R and P are integers, SALT and HASH hex digits"),
        (lambda f: [*f[:3], f[3].replace("$16384$", "$1000$")], "line 2: scrypt parameters N=1000"),
        (lambda f: [*f[:3], f[3][:-2]], "line 2: the salt is at least 16 bytes and the hash 32"),
    ],
)
def test_a_bad_line_fails_the_start_up_naming_the_file_and_line(
    tmp_path: Path, made: dict[str, tuple[str, str]], edit: Callable[[list[str]], list[str]], says: str
) -> None:
    path = key_file(tmp_path, "# keys", " ".join(edit(_line(made))))
    with pytest.raises(InvalidSetting) as refused:
        load_keys(str(path))
    message = str(refused.value)
    assert message.startswith(f"FORECAST_API_KEYS file {path} ") and says in message and "\n" not in message


def test_a_file_that_is_missing_empty_or_repeats_a_name_fails_the_start_up(
    tmp_path: Path, made: dict[str, tuple[str, str]]
) -> None:
    with pytest.raises(InvalidSetting, match=r"cannot read the key file .*/absent.txt: No such file"):
        load_keys(str(tmp_path / "absent.txt"))
    with pytest.raises(
        InvalidSetting, match=r"holds no keys; add one with `python -m api\.access\.keys hash NAME SCOPE`"
    ):
        load_keys(str(key_file(tmp_path, "# nothing yet", "")))
    renamed = made["batch"][0].replace("batch ", "dashboard ", 1)
    with pytest.raises(InvalidSetting, match=r"the names \['dashboard'\] appear more than once"):
        load_keys(str(key_file(tmp_path, made["dashboard"][0], renamed)))
    with pytest.raises(InvalidSetting, match="a key id appears twice"):
        load_keys(str(key_file(tmp_path, made["dashboard"][0], made["dashboard"][0].replace("dashboard", "copy"))))


# --- constant time -------------------------------------------------------------------------


@pytest.mark.parametrize("presented", [KEY_A, KEY_B, "c" * 30, "c"])
def test_a_key_is_compared_with_every_entry_as_equal_length_digests(
    presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a check costs must not depend on which key matched, nor on how much of one did: so
    every entry is compared (no early exit), with compare_digest, on equal-length digests."""
    ring = load_keys(f"one:{KEY_A},two:{KEY_B},three:{'d' * 16}")
    assert ring is not None
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api.access.keys.hmac, "compare_digest", spy)
    verify(ring, presented)
    assert len(compared) == 3
    assert {len(a) for a, _ in compared} == {len(b) for _, b in compared} == {32}


# --- the operator's helper -----------------------------------------------------------------


def test_the_helper_prints_a_line_for_the_file_and_the_key_apart(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "api.access.keys", "hash", "nightly-job", "forecast"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = made.stdout.strip()
    key = made.stderr.strip().rsplit(": ", 1)[-1]
    assert line.startswith("nightly-job forecast ") and key not in made.stdout
    ring = load_keys(str(key_file(tmp_path, line)))
    assert ring is not None and verify(ring, key) == ApiKey("nightly-job", KeyScope.FORECAST)
    again = subprocess.run(
        [sys.executable, "-m", "api.access.keys", "hash", "nightly-job", "forecast"], capture_output=True
    )
    assert again.stdout.strip() != made.stdout.strip()  # a fresh key and salt each time
    refused = subprocess.run([sys.executable, "-m", "api.access.keys", "hash", "bad name", "read"], capture_output=True)
    assert refused.returncode == 2 and b"a key's name is" in refused.stderr and not refused.stdout


# --- scopes, paths and the header ----------------------------------------------------------


def test_a_read_key_may_forecast_and_a_forecast_key_may_only_forecast() -> None:
    assert KeyScope.READ.grants(KeyScope.READ) and KeyScope.READ.grants(KeyScope.FORECAST)
    assert KeyScope.FORECAST.grants(KeyScope.FORECAST) and not KeyScope.FORECAST.grants(KeyScope.READ)


@pytest.mark.parametrize(
    ("path", "default", "public_all", "private_all"),
    [
        ("/healthz", None, None, None),
        ("/readyz", None, None, None),
        ("/", None, None, None),
        ("/dashboard/", None, None, None),
        ("/dashboard/js/api.js", None, None, None),
        ("/metrics", KeyScope.READ, None, KeyScope.READ),
        ("/docs", None, None, KeyScope.FORECAST),
        ("/openapi.json", None, None, KeyScope.FORECAST),
        ("/redoc", None, None, KeyScope.FORECAST),
        ("/v1/forecast", KeyScope.FORECAST, KeyScope.FORECAST, KeyScope.FORECAST),
        ("/v1/models", KeyScope.READ, KeyScope.READ, KeyScope.READ),
        ("/v1/models/demo/versions/1", KeyScope.READ, KeyScope.READ, KeyScope.READ),
        ("/v1/forecast/", KeyScope.READ, KeyScope.READ, KeyScope.READ),
        ("/dashboardx", KeyScope.READ, KeyScope.READ, KeyScope.READ),
        ("/anything-else", KeyScope.READ, KeyScope.READ, KeyScope.READ),
    ],
)
def test_only_probes_and_the_dashboards_files_are_always_open(
    path: str, default: KeyScope | None, public_all: KeyScope | None, private_all: KeyScope | None
) -> None:
    docs = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
    assert PathPolicy(docs, public_docs=True, public_metrics=False).needed(path) == default
    assert PathPolicy(docs, public_docs=True, public_metrics=True).needed(path) == public_all
    assert PathPolicy(docs, public_docs=False, public_metrics=False).needed(path) == private_all


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc.def", "abc.def"),
        (b"bearer   abc.def  ", "abc.def"),
        (b"BEARER abc", "abc"),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearer ", None),
        (b"abc.def", None),
    ],
)
def test_the_key_is_read_from_a_bearer_authorization_header(header: bytes, token: str | None) -> None:
    assert bearer_token({"headers": [(b"accept", b"*/*"), (b"authorization", header)]}) == token
    assert bearer_token({"headers": [(b"accept", b"*/*")]}) is None

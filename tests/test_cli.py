"""The `forecast` command as a user meets it: every bad input ends in one readable error line,
a non-zero exit and an untouched registry; `models list | show | promote` on a real registry."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.support.cli import (
    CLI_TIMEOUT_S,
    SMALL_MODEL_ARGS,
    CliResult,
    TrainedRegistry,
    aliases,
    child_env,
    files_under,
    forecast_command,
    manifest,
    run_forecast,
    run_forecast_many,
    train,
)
from tests.support.data import seasonal_frame, write_csv

# The matrix runs without --quiet, as a user would: no progress bar may start before the checks.
MODEL_ARGS = [arg for arg in SMALL_MODEL_ARGS if arg != "--quiet"]
ACCEPTED = "accepted"


def _without(flag: str) -> list[str]:
    at = MODEL_ARGS.index(flag)
    return MODEL_ARGS[:at] + MODEL_ARGS[at + 2 :]


def _set_value(frame: pd.DataFrame, series_id: str, position: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[frame.index[frame["series_id"] == series_id][position], column] = value
    return frame


def _write_inputs(folder: Path) -> dict[str, Path]:
    """One file per way a table can be wrong, each a small change to a good table."""
    good = seasonal_frame()
    rows_of = {sid: good.index[good["series_id"] == sid] for sid in ("a", "b", "c")}
    unsorted = good.copy()
    first, second = rows_of["b"][20], rows_of["b"][21]
    unsorted.loc[[first, second], "timestamp"] = unsorted.loc[[second, first], "timestamp"].to_numpy()
    duplicate = good.copy()
    duplicate.loc[rows_of["a"][10], "timestamp"] = duplicate.loc[rows_of["a"][9], "timestamp"]
    # every series shorter than the validation and test blocks with a window before them
    short = good.groupby("series_id").head(60)
    off_grid = good.copy()
    off_grid.loc[rows_of["c"][200], "timestamp"] = pd.Timestamp(
        good.loc[rows_of["c"][200], "timestamp"]
    ) + pd.Timedelta(minutes=30)
    frames = {
        "good": good,
        "missing_columns": good.rename(columns={"value": "reading"}),
        "non_numeric": _set_value(good, "b", 100, "value", "abc"),
        "infinite": _set_value(good, "c", 50, "value", "inf"),
        "duplicate": duplicate,
        "unsorted": unsorted,
        "irregular": off_grid,
        "too_short": short,
        # Unix seconds as integers: without a unit pandas would read them as nanoseconds after 1970
        "unix_seconds": good.assign(timestamp=pd.to_datetime(good["timestamp"]).astype("int64") // 10**9),
    }
    paths = {key: write_csv(frame, folder / f"{key}.csv") for key, frame in frames.items()}
    # One 5 MB line (a header of a million columns), and a header of 150,000 short names: parsing
    # either would take minutes and gigabytes; both are refused from the first line alone.
    (folder / "one_line.csv").write_text("c," * 2_500_000 + "\n1\n")
    (folder / "too_wide.csv").write_text(",".join(["x"] * 150_000) + "\n")
    paths |= {"one_line": folder / "one_line.csv", "too_wide": folder / "too_wide.csv"}
    # 200,000 series of one point each: parsed one by one they took minutes before the first
    # "too short"; counted in one vectorised step they are refused at once.
    many = pd.DataFrame({"series_id": [f"s{i}" for i in range(200_000)], "timestamp": "2024-01-01", "value": 1.0})
    paths["one_point_each"] = write_csv(many, folder / "one_point_each.csv")
    (folder / "broken.json").write_text('{"hidden_size": 16,')
    (folder / "unknown_key.json").write_text(json.dumps({"hiden_size": 16}))
    (folder / "negative.toml").write_text("hidden_size = -4\n")
    return paths


@dataclass(frozen=True, slots=True)
class BadCase:
    id: str
    args: list[str]  # after `train --registry R`; {good} and friends name the input files
    expected: tuple[str, ...]  # each must appear in the error line
    needs_cpu_only: bool = False


BAD_CASES = [
    BadCase("missing-file", ["--data", "{missing}", "--name", "m", *MODEL_ARGS], ("does not exist", "nope.csv")),
    BadCase(
        "missing-columns",
        ["--data", "{missing_columns}", "--name", "m", *MODEL_ARGS],
        ("missing columns ['value']", "reading"),
    ),
    BadCase(
        "non-numeric",
        ["--data", "{non_numeric}", "--name", "m", *MODEL_ARGS],
        ("series 'b'", "'abc'", "not a number"),
    ),
    BadCase(
        "infinite", ["--data", "{infinite}", "--name", "m", *MODEL_ARGS], ("series 'c'", "infinite", "position 50")
    ),
    BadCase(
        "duplicate-timestamp",
        ["--data", "{duplicate}", "--name", "m", *MODEL_ARGS],
        ("series 'a'", "duplicate timestamp", "position 10"),
    ),
    BadCase(
        "unsorted-timestamps",
        ["--data", "{unsorted}", "--name", "m", *MODEL_ARGS],
        ("series 'b'", "unsorted timestamp", "position 21"),
    ),
    BadCase(
        "irregular-spacing",
        ["--data", "{irregular}", "--name", "m", *MODEL_ARGS],
        ("series 'c'", "irregular timestamps", "position 200"),
    ),
    BadCase(
        "irregular-at-given-freq",
        ["--data", "{irregular}", "--name", "m", "--freq", "h", *MODEL_ARGS],
        ("series 'c'", "irregular timestamps", "(position 200) is not on the 'h' grid"),
    ),
    BadCase(
        "series-too-short",
        ["--data", "{too_short}", "--name", "m", *MODEL_ARGS],
        ("no series gives a window to the train", "the longest has 60 points", "lower --val-size"),
    ),
    BadCase(
        "one-point-each",
        ["--data", "{one_point_each}", "--name", "m", "--freq", "h", *MODEL_ARGS],
        ("no series is long enough", "200,000 series has 1 rows", "lower --val-size"),
    ),
    BadCase("bad-freq", ["--data", "{good}", "--name", "m", "--freq", "fortnightly", *MODEL_ARGS], ("'fortnightly'",)),
    BadCase(
        "wrong-freq",
        ["--data", "{good}", "--name", "m", "--freq", "D", *MODEL_ARGS],
        ("series 'a'", "irregular timestamps", "is not on the 'D' grid"),
    ),
    BadCase(
        "horizon-missing",
        ["--data", "{good}", "--name", "m", *_without("--horizon")],
        ("missing --horizon", "--retrain"),
    ),
    BadCase("horizon-zero", ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--horizon", "0"], ("horizon",)),
    BadCase(
        "val-size-below-horizon",
        ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--val-size", "4"],
        ("--val-size (4)", "horizon (12)"),
    ),
    BadCase("name-escapes", ["--data", "{good}", "--name", "../evil", *MODEL_ARGS], ("invalid model name '../evil'",)),
    BadCase("name-with-slash", ["--data", "{good}", "--name", "a/b", *MODEL_ARGS], ("invalid model name 'a/b'",)),
    BadCase("retrain-unknown-model", ["--data", "{good}", "--name", "ghost", "--retrain"], ("'ghost'", "not in")),
    BadCase("warm-start-unknown-model", ["--data", "{good}", "--name", "ghost", "--warm-start"], ("'ghost'", "not in")),
    BadCase(
        "cuda-on-cpu",
        ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--device", "cuda"],
        ("'cuda'", "no GPU"),
        needs_cpu_only=True,
    ),
    BadCase(
        "config-not-json",
        ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--config", "{broken_config}"],
        ("cannot read config file", "broken.json"),
    ),
    BadCase(
        "config-unknown-key",
        ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--config", "{unknown_key_config}"],
        ("hiden_size", "Extra inputs are not permitted"),
    ),
    BadCase(
        "config-bad-value",
        ["--data", "{good}", "--name", "m", *_without("--hidden-size"), "--config", "{negative_config}"],
        ("hidden_size", "greater than or equal to 1"),
    ),
    BadCase(
        "one-line-file", ["--data", "{one_line}", "--name", "m", *MODEL_ARGS], ("first line is longer than 1024 KiB",)
    ),
    BadCase("too-wide-header", ["--data", "{too_wide}", "--name", "m", *MODEL_ARGS], ("150,000 columns",)),
    BadCase(
        "numeric-timestamps",
        ["--data", "{unix_seconds}", "--name", "m", *MODEL_ARGS],
        ("holds numbers", "1704067200", "--timestamp-unit s"),
    ),
    BadCase(
        "unit-for-dates",
        ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--timestamp-unit", "s"],
        ("--timestamp-unit s reads numeric timestamps", "holds text"),
    ),
    BadCase("config-missing", ["--data", "{good}", "--name", "m", *MODEL_ARGS, "--config", "{missing}"], ("nope",)),
]


def _bad_input_invocations(folder: Path) -> tuple[list[list[str]], dict[str, Path]]:
    """Every bad case into its own (empty) registry, then a control that must train."""
    paths = {key: str(path) for key, path in _write_inputs(folder).items()}
    paths |= {
        "missing": str(folder / "nope.csv"),
        "broken_config": str(folder / "broken.json"),
        "unknown_key_config": str(folder / "unknown_key.json"),
        "negative_config": str(folder / "negative.toml"),
    }
    registries = {case.id: folder / f"registry-{case.id}" for case in BAD_CASES}
    invocations = [
        ["train", "--registry", str(registries[case.id]), *(arg.format(**paths) for arg in case.args)]
        for case in BAD_CASES
    ]
    # the control: the good table with the matrix's arguments trains (one epoch)
    registries[ACCEPTED] = folder / "registry-accepted"
    fast = [*_without("--max-epochs"), "--max-epochs", "1"]
    invocations.append(["train", "--registry", str(registries[ACCEPTED]), "--data", paths["good"], "--name", "m"])
    invocations[-1] += fast
    return invocations, registries


def _models_invocations(root: Path, empty: Path) -> dict[str, list[str]]:
    """In this order: they run one after another on the same registry."""
    commands = {
        "list": ["models", "list", "--registry", root],
        "list-option-first": ["models", "--registry", root, "list"],
        "show": ["models", "show", "demo", "--registry", root],
        "promote-staging": ["models", "promote", "demo", "1", "--alias", "staging", "--registry", root],
        "list-after-promote": ["models", "list", "--registry", root],
        "promote-missing-version": ["models", "promote", "demo", "7", "--registry", root],
        "promote-bad-alias": ["models", "promote", "demo", "1", "--alias", "../prod", "--registry", root],
        "show-unknown": ["models", "show", "ghost", "--registry", root],
        "list-empty": ["models", "list", "--registry", empty],
    }
    return {key: [str(arg) for arg in argv] for key, argv in commands.items()}


@dataclass(slots=True)
class CliRuns:
    bad: dict[str, tuple[CliResult, Path]]  # case id -> result, the registry it was pointed at
    models_root: Path
    models: dict[str, CliResult]


@pytest.fixture(scope="module")
def cli_runs(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> CliRuns:
    """Every invocation of this module, each in its own process, in one batch (one torch import)."""
    folder = tmp_path_factory.mktemp("cli")
    bad_invocations, registries = _bad_input_invocations(folder)
    models_root = trained_registry.copy_to(folder / "trained")
    models_invocations = _models_invocations(models_root, folder / "empty")
    results = run_forecast_many([*bad_invocations, *models_invocations.values()], folder / "runs")
    bad_ids = [*(case.id for case in BAD_CASES), ACCEPTED]
    bad_results, models_results = results[: len(bad_ids)], results[len(bad_ids) :]
    return CliRuns(
        bad={key: (result, registries[key]) for key, result in zip(bad_ids, bad_results, strict=True)},
        models_root=models_root,
        models=dict(zip(models_invocations, models_results, strict=True)),
    )


@pytest.fixture
def bad_runs(cli_runs: CliRuns) -> dict[str, tuple[CliResult, Path]]:
    return cli_runs.bad


def assert_one_line_error(result: CliResult, *expected: str) -> str:
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert len(result.stderr_lines) == 1, result.describe()
    line = result.stderr_lines[0]
    assert line.startswith("error: "), line
    for fragment in expected:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.id for case in BAD_CASES])
def test_bad_input_gives_one_error_line_and_writes_nothing(
    case: BadCase, bad_runs: dict[str, tuple[CliResult, Path]]
) -> None:
    if case.needs_cpu_only and torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so --device cuda is valid here")
    result, registry = bad_runs[case.id]

    assert_one_line_error(result, *case.expected)
    assert files_under(registry) == [], "a failed train wrote to the registry"


def test_the_good_table_with_the_matrix_arguments_is_accepted(bad_runs: dict[str, tuple[CliResult, Path]]) -> None:
    """Guards the matrix: its cases fail for their own defect, not for the shared arguments."""
    result, registry = bad_runs[ACCEPTED]

    assert result.returncode == 0, result.describe()
    assert (registry / "m" / "versions" / "1" / "manifest.json").is_file()


def test_the_console_script_reports_bad_input_like_the_matrix(tmp_path: Path) -> None:
    registry = tmp_path / "registry"

    result = run_forecast("train", "--data", tmp_path / "nope.csv", "--name", "m", "--registry", registry, *MODEL_ARGS)

    assert_one_line_error(result, "does not exist", "nope.csv")
    assert files_under(registry) == []


# ---- models list | show | promote --------------------------------------------------------


@pytest.fixture
def models_runs(cli_runs: CliRuns) -> tuple[Path, dict[str, CliResult]]:
    return cli_runs.models_root, cli_runs.models


def test_models_list_shows_versions_and_aliases(models_runs: tuple[Path, dict[str, CliResult]]) -> None:
    _, runs = models_runs
    for key in ("list", "list-option-first"):
        assert runs[key].returncode == 0, runs[key].describe()
        assert runs[key].stdout.strip() == 'demo: versions [1], aliases {"production": 1}'
    assert runs["list-empty"].returncode == 0
    assert runs["list-empty"].stdout.startswith("no models in")


def test_models_show_lists_each_version_with_its_metrics(models_runs: tuple[Path, dict[str, CliResult]]) -> None:
    _, runs = models_runs
    show = runs["show"]

    assert show.returncode == 0, show.describe()
    lines = show.stdout.splitlines()
    assert lines[0] == 'demo: aliases {"production": 1}'
    assert lines[1].strip().startswith("v1 lstm L=48 H=12 freq=h")
    assert "test mse" in lines[1] and "seasonal naive" in lines[1] and lines[1].endswith("[production]")


def test_the_inspection_commands_do_not_load_torch(models_runs: tuple[Path, dict[str, CliResult]]) -> None:
    """`forecast models ...` only reads JSON: it must answer in well under a second, not pay
    for importing torch and scikit-learn (about 4 s on two cores)."""
    root, _ = models_runs
    probe = (
        "import sys\n"
        "from forecast.cli import main\n"
        f"for argv in (['models', 'list', '--registry', {str(root)!r}], ['models', 'show', 'demo', '--registry', {str(root)!r}]):\n"
        "    assert main(argv) == 0\n"
        "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_models_promote_points_an_alias_at_a_version(models_runs: tuple[Path, dict[str, CliResult]]) -> None:
    root, runs = models_runs

    assert runs["promote-staging"].returncode == 0, runs["promote-staging"].describe()
    assert runs["promote-staging"].stdout.strip() == "demo: alias staging -> version 1"
    assert '"staging": 1' in runs["list-after-promote"].stdout
    assert aliases(root, "demo") == {"production": 1, "staging": 1}


def test_models_promote_and_show_fail_cleanly_on_what_does_not_exist(
    models_runs: tuple[Path, dict[str, CliResult]],
) -> None:
    root, runs = models_runs

    assert_one_line_error(runs["promote-missing-version"], "'demo' has no version 7", "versions: [1]")
    assert_one_line_error(runs["promote-bad-alias"], "invalid alias '../prod'")
    assert_one_line_error(runs["show-unknown"], "'ghost' is not in the registry", "['demo']")
    assert aliases(root, "demo") == {"production": 1, "staging": 1}, "a failed promote moved an alias"
    assert sorted(p.name for p in (root / "demo" / "versions").iterdir()) == ["1"]


def test_unix_seconds_train_on_their_hourly_grid_with_a_unit(tmp_path: Path) -> None:
    """--timestamp-unit s reads integer timestamps as Unix time: the model's axis is hours from
    2024, not nanoseconds from 1970, and the unit is kept for the version's later reads."""
    good = seasonal_frame()
    data = write_csv(
        good.assign(timestamp=pd.to_datetime(good["timestamp"]).astype("int64") // 10**9), tmp_path / "unix.csv"
    )
    train(data, tmp_path / "registry", "unix", "--timestamp-unit", "s", "--max-epochs", "1", "--force")
    written = manifest(tmp_path / "registry", "unix", 1)
    assert written["freq"] == "h" and written["data"]["first_timestamp"].startswith("2024-01-01T00:00")
    assert written["training"]["timestamp_unit"] == "s"


def _small_files_only() -> None:
    """In the child: files may not grow past 30 KB (a full disk, as the writer sees it: EFBIG
    instead of ENOSPC), and the signal that would kill it instead is ignored."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


def test_a_full_disk_is_one_line_naming_where_and_why_and_nothing_is_published(tmp_path: Path) -> None:
    data = write_csv(seasonal_frame(), tmp_path / "series.csv")
    registry = tmp_path / "registry"
    completed = subprocess.run(
        [
            *forecast_command(),
            "train",
            "--data",
            str(data),
            "--name",
            "full",
            "--registry",
            str(registry),
            *SMALL_MODEL_ARGS,
            "--max-epochs",
            "1",
            "--force",
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        preexec_fn=_small_files_only,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("error: cannot write a new version of 'full' to ") and "EFBIG" in line, line
    assert "nothing was published" in line
    assert not (registry / "full" / "versions").exists() or not any((registry / "full" / "versions").iterdir())

"""The container files: docker-compose.yml, its GPU override, the Dockerfile and .dockerignore.

Docker cannot run on these machines, so the compose files are validated by Debian's
`docker-compose` (1.29.2, Compose v1, which knows the Compose Specification's `profiles` and
`deploy.resources.reservations.devices`): `docker-compose config` must accept them, and its
resolved output must show the topology a user relies on. The Dockerfile gets static checks of
what a user of the image cares about. The topology itself (a trainer writing versions while the
API serves them from the same registry) is tested with real processes in the end-to-end tests.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# --- docker-compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_bin() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "the docker-compose binary is missing: run `make test`, which installs Debian's "
            "docker-compose (or `apt-get install docker-compose`) before running the tests"
        )
    return found


def compose_env() -> dict[str, str]:
    """The environment without anything that would change how compose resolves the files."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("FORECAST_", "COMPOSE_", "DOCKER_"))}


def run_compose(
    compose_bin: str, *files: Path, args: tuple[str, ...] = ("config",), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [compose_bin, "--project-directory", str(ROOT)]
    for file in files:
        argv += ["-f", str(file)]
    return subprocess.run(
        [*argv, *args],
        cwd=ROOT,
        env={**compose_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def resolved_config(compose_bin: str, *files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run_compose(compose_bin, *files, env=env)
    names = " + ".join(file.name for file in files)
    assert result.returncode == 0, f"docker-compose config rejected {names}:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict) and "services" in config, result.stdout
    return config


@pytest.fixture(scope="module")
def base_config(compose_bin: str) -> dict[str, Any]:
    return resolved_config(compose_bin, COMPOSE)


@pytest.fixture(scope="module")
def gpu_config(compose_bin: str) -> dict[str, Any]:
    return resolved_config(compose_bin, COMPOSE, COMPOSE_GPU)


def mounts(service: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
    """Container path -> (host path, read-only), from the short or the long volume syntax."""
    found: dict[str, tuple[Path, bool]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *rest = volume.split(":")
            read_only = bool(rest) and "ro" in rest[0].split(",")
        else:
            source, target = volume["source"], volume["target"]
            read_only = bool(volume.get("read_only", False))
        found[target] = (Path(source).resolve(), read_only)
    return found


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port. Compose v1 resolves a
    port with a host address to the short form ("127.0.0.1:8000:8000/tcp"), Compose v2 to the
    long one (host_ip, published, target); no host address means every interface."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "0.0.0.0")), str(port["published"]), str(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            found.append((parts[0] or "0.0.0.0", parts[1], parts[2]))
        elif len(parts) == 2:
            found.append(("0.0.0.0", parts[0], parts[1]))
        else:
            found.append(("0.0.0.0", "", parts[0]))  # a random host port
    return found


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return test if isinstance(test, str) else " ".join(test)


def test_compose_file_is_valid_and_has_the_two_services(base_config: dict[str, Any]) -> None:
    assert set(base_config["services"]) == {"api", "trainer"}


def test_api_serves_the_registry_read_only(base_config: dict[str, Any]) -> None:
    api = base_config["services"]["api"]
    assert mounts(api)["/models"] == ((ROOT / "models").resolve(), True), "the API must mount ./models read-only"
    assert api["environment"]["FORECAST_REGISTRY"] == "/models"
    assert api["build"]["context"] == str(ROOT)
    assert [(published, target) for _, published, target in published_ports(api)] == [("8000", "8000")]
    assert api["restart"] == "unless-stopped"
    assert "/healthz" in healthcheck_command(api)
    assert api["command"][:2] == ["forecast", "serve"]


def test_trainer_is_a_job_behind_its_profile_writing_the_shared_registry(base_config: dict[str, Any]) -> None:
    api, trainer = base_config["services"]["api"], base_config["services"]["trainer"]
    assert trainer["profiles"] == ["trainer"], "`docker compose up` must start the API only"
    trainer_mounts = mounts(trainer)
    assert trainer_mounts["/models"] == ((ROOT / "models").resolve(), False), "the trainer must write ./models"
    assert trainer_mounts["/data"] == ((ROOT / "data").resolve(), True)
    assert trainer["environment"]["FORECAST_REGISTRY"] == "/models"
    # One image for both, so `docker compose run --rm trainer forecast train ...` runs the same code
    # the API serves with, and no entrypoint gets in the way of the command given to `run`.
    assert trainer["image"] == api["image"]
    assert "entrypoint" not in trainer
    assert healthcheck_command(trainer) == "NONE", "a job has no /healthz: the image's check must be off"
    assert trainer.get("restart", "no") == "no"


def test_the_api_is_published_on_the_loopback_interface_unless_told_otherwise(
    compose_bin: str, base_config: dict[str, Any]
) -> None:
    """Plain HTTP on every interface of the host is what the attacker found; the default is this
    host only, and FORECAST_BIND picks another interface (a private one, for a proxy elsewhere)."""
    assert published_ports(base_config["services"]["api"]) == [("127.0.0.1", "8000", "8000")]
    chosen = resolved_config(compose_bin, COMPOSE, env={"FORECAST_BIND": "10.0.0.5"})
    assert published_ports(chosen["services"]["api"]) == [("10.0.0.5", "8000", "8000")]
    assert "ports" not in base_config["services"]["trainer"], "a job publishes nothing"


def memory_bytes(limit: str | int) -> int:
    text = str(limit).lower().rstrip("b")
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def assert_hardened(service: dict[str, Any], name: str) -> None:
    assert service.get("read_only") is True, f"{name}: the root filesystem must be read-only"
    assert service.get("cap_drop") == ["ALL"] and not service.get("cap_add"), f"{name}: every capability dropped"
    assert "no-new-privileges:true" in service.get("security_opt", []), f"{name}: no-new-privileges"
    assert not service.get("privileged"), name
    tmp = [mount for mount in service.get("tmpfs", []) if mount.split(":")[0] == "/tmp"]
    assert len(tmp) == 1, f"{name}: /tmp, the one writable place, is a tmpfs"
    options = tmp[0].partition(":")[2].split(",")
    assert {"noexec", "nosuid", "nodev"} <= set(options), f"{name}: {tmp[0]}"
    assert any(option.startswith("size=") for option in options), f"{name}: a tmpfs without a size takes half the RAM"
    assert 256 * 2**20 <= memory_bytes(service["mem_limit"]) <= 64 * 2**30, f"{name}: mem_limit {service['mem_limit']}"
    assert 0 < float(service["cpus"]) <= 64, f"{name}: cpus {service.get('cpus')}"
    assert 0 < int(service["pids_limit"]) <= 4096, f"{name}: pids_limit"
    # Nothing that would undo the hardening (the GPU comes through a device reservation).
    for namespace in ("network_mode", "pid", "ipc", "userns_mode"):
        assert service.get(namespace) != "host", f"{name}: {namespace} shared with the host"
    assert "devices" not in service, f"{name}: host devices mapped in"


@pytest.mark.parametrize("which", ["base", "gpu"])
def test_both_containers_are_locked_down_with_limits(
    which: str, base_config: dict[str, Any], gpu_config: dict[str, Any]
) -> None:
    config = base_config if which == "base" else gpu_config
    for name in ("api", "trainer"):
        assert_hardened(config["services"][name], f"{which} {name}")
    # The only writable mounts: the trainer's registry (and /tmp above).
    api, trainer = config["services"]["api"], config["services"]["trainer"]
    assert [target for target, (_, read_only) in mounts(api).items() if not read_only] == []
    assert [target for target, (_, read_only) in mounts(trainer).items() if not read_only] == ["/models"]


def test_the_limits_can_be_raised_without_editing_the_file(compose_bin: str) -> None:
    raised = resolved_config(
        compose_bin,
        COMPOSE,
        env={"FORECAST_API_MEMORY": "6g", "FORECAST_API_CPUS": "3", "FORECAST_TRAINER_MEMORY": "12g"},
    )
    api, trainer = raised["services"]["api"], raised["services"]["trainer"]
    assert memory_bytes(api["mem_limit"]) == 6 * 2**30 and float(api["cpus"]) == 3.0
    assert memory_bytes(trainer["mem_limit"]) == 12 * 2**30


def test_trainer_runs_with_the_profile_enabled(compose_bin: str) -> None:
    result = run_compose(compose_bin, COMPOSE, args=("--profile", "trainer", "config", "--services"))
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"api", "trainer"}


def test_gpu_override_merges_a_gpu_reservation_and_the_cuda_build(
    base_config: dict[str, Any], gpu_config: dict[str, Any]
) -> None:
    assert set(gpu_config["services"]) == {"api", "trainer"}
    for name in ("api", "trainer"):
        service = gpu_config["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
        assert service["environment"]["FORECAST_DEVICE"] == "cuda", name
        assert service["environment"]["FORECAST_REGISTRY"] == "/models", name
        # The override adds to the base, it does not undo it.
        assert mounts(service) == mounts(base_config["services"][name]), name
        args = service["build"]["args"]
        assert args["BASE_IMAGE"].startswith("nvidia/cuda:"), name
        # The base image's CUDA and the torch build's CUDA agree: 12.8.1 goes with cu128.
        cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)", args["BASE_IMAGE"])
        index = re.search(r"/whl/cu(\d+)$", args["TORCH_INDEX"])
        assert cuda and index, args
        assert index.group(1) == cuda.group(1) + cuda.group(2), args
        # Its own tag, so the CPU image stays as it is.
        assert service["image"] != base_config["services"][name]["image"]
    assert gpu_config["services"]["trainer"]["profiles"] == ["trainer"]


# --- Dockerfile -----------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in logical]


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction, args in parsed:
        if instruction == "FROM":
            found.append([])
        if found:
            found[-1].append((instruction, args))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


def args_of(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [args for name, args in stage if name == instruction]


def arg_defaults(parsed: list[tuple[str, str]]) -> dict[str, str]:
    defaults = {}
    for args in args_of(parsed, "ARG"):
        name, _, value = args.partition("=")
        if value:
            defaults[name] = value
    return defaults


def pyproject_torch_pin() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [m.group(1) for d in dependencies if (m := re.fullmatch(r"torch\s*==\s*(\S+)", d.strip()))]
    assert len(pins) == 1, f"pyproject.toml should pin torch exactly once: {dependencies}"
    return pins[0]


def test_dockerfile_is_multi_stage_and_ships_only_the_venv(dockerfile: list[tuple[str, str]]) -> None:
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    assert any(args.split()[-1] == "builder" for args in args_of(all_stages[0], "FROM"))
    copies = args_of(all_stages[-1], "COPY")
    assert any(args.startswith("--from=builder") for args in copies)
    assert all(args.startswith("--from=") for args in copies), "the runtime stage takes nothing from the context"


def test_final_stage_runs_as_a_user_it_creates_that_is_not_root(final_stage: list[tuple[str, str]]) -> None:
    users = args_of(final_stage, "USER")
    assert users, "the final stage has no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    creates = " ".join(args_of(final_stage, "RUN"))
    assert re.search(rf"(useradd|adduser)\b[^;&]*\b{re.escape(user)}\b", creates), f"USER {user} is never created"


def test_final_stage_has_no_set_uid_programs_and_caches_in_tmp(final_stage: list[tuple[str, str]]) -> None:
    """Without no-new-privileges (a plain `docker run`), a set-uid program is how a process in
    the container becomes root; and with --read-only, /tmp is the one writable place."""
    runs = " ".join(args_of(final_stage, "RUN"))
    assert re.search(r"find / -xdev -type f -perm /6000 -exec chmod a-s \{\} \+", runs)
    env = " ".join(args_of(final_stage, "ENV"))
    assert re.search(r"(^|\s)XDG_CACHE_HOME=/tmp/", env)


def test_healthcheck_hits_healthz_without_curl(final_stage: list[tuple[str, str]]) -> None:
    checks = args_of(final_stage, "HEALTHCHECK")
    assert len(checks) == 1
    assert "/healthz" in checks[0] and ":8000/" in checks[0]
    assert "curl" not in checks[0] and "wget" not in checks[0]


def test_image_defaults_serve_the_registry_on_port_8000(final_stage: list[tuple[str, str]]) -> None:
    assert "8000" in " ".join(args_of(final_stage, "EXPOSE")).split()
    assert any(re.search(r"(^|\s)FORECAST_REGISTRY=/models(\s|$)", env) for env in args_of(final_stage, "ENV"))
    assert any("/models" in volume for volume in args_of(final_stage, "VOLUME"))
    cmd = args_of(final_stage, "CMD")[-1]
    assert cmd.startswith("["), "CMD in exec form, so the server gets the signals"
    assert yaml.safe_load(cmd) == ["forecast", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_torch_is_the_pyproject_pin_from_the_cpu_index_by_default(dockerfile: list[tuple[str, str]]) -> None:
    pin = pyproject_torch_pin()
    text = " ".join(args_of(dockerfile, "RUN"))
    assert set(re.findall(r"torch==([\w.+-]+)", text)) == {pin}, f"the Dockerfile must install torch=={pin}"
    torch_installs = [
        command
        for run in args_of(dockerfile, "RUN")
        for command in run.split("&&")
        if "pip install" in command and f"torch=={pin}" in command
    ]
    assert torch_installs and all("--index-url" in c and "TORCH_INDEX" in c for c in torch_installs)
    defaults = arg_defaults(dockerfile)
    assert defaults["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert defaults["BASE_IMAGE"].startswith("python:3.")
    assert args_of(dockerfile, "FROM")[0].startswith("${BASE_IMAGE}")


def test_compose_cpu_build_args_are_the_dockerfile_defaults(
    base_config: dict[str, Any], dockerfile: list[tuple[str, str]]
) -> None:
    defaults = arg_defaults(dockerfile)
    for name in ("api", "trainer"):
        for arg, value in base_config["services"][name]["build"].get("args", {}).items():
            assert defaults.get(arg) == value, f"{name}: build arg {arg}={value} differs from the Dockerfile's"


def test_build_context_has_what_the_dockerfile_copies_and_leaves_the_rest_out(
    dockerfile: list[tuple[str, str]],
) -> None:
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    ignored = [line for line in ignored if line and not line.startswith("#")]
    for needed in (".venv", ".git", "tests", "bench", "models/*", "!models/README.md"):
        assert needed in ignored, f".dockerignore should list {needed}"
    for args in args_of(dockerfile, "COPY"):
        words = shlex.split(args)
        if any(word.startswith("--from=") for word in words):
            continue
        for source in (word for word in words[:-1] if not word.startswith("--")):
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which the repository lacks"
            assert source not in ignored, f"the Dockerfile copies {source}, which .dockerignore leaves out"

"""The container files: docker-compose.yml (with its S3 profile and deploy/compose/nginx.conf),
its GPU override, the Dockerfile and .dockerignore.

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
NGINX_CONF = ROOT / "deploy" / "compose" / "nginx.conf"

# Every service, and the profile each sits behind (None: started by a plain `docker compose up`).
PROFILES = {
    "api": None,
    "trainer": "trainer",
    "minio": "s3",
    "minio-init": "s3",
    "api-s3-1": "s3",
    "api-s3-2": "s3",
    "proxy": "s3",
    "trainer-s3": "s3",
}
# The services that run the project's image.
FORECAST_SERVICES = ("api", "trainer", "api-s3-1", "api-s3-2", "trainer-s3")
S3_REPLICAS = ("api-s3-1", "api-s3-2")


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


def resolved_config(
    compose_bin: str, *files: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ("config",)
) -> dict[str, Any]:
    result = run_compose(compose_bin, *files, args=args, env=env)
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


def active_services(config: dict[str, Any], *profiles: str) -> set[str]:
    """The services `docker compose --profile P ... up` would start: those without profiles, and
    those behind one of the given profiles (Compose v1's `config` lists every service)."""
    return {
        name
        for name, service in config["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }


def test_compose_file_is_valid_and_a_plain_up_starts_the_api_only(base_config: dict[str, Any]) -> None:
    assert set(base_config["services"]) == set(PROFILES)
    for name, profile in PROFILES.items():
        assert base_config["services"][name].get("profiles") == ([profile] if profile else None), name
    assert active_services(base_config) == {"api"}


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
    assert trainer_mounts["/forecasts"] == ((ROOT / "forecasts").resolve(), False), "batch scoring writes here"
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
def test_every_container_is_locked_down_with_limits(
    which: str, base_config: dict[str, Any], gpu_config: dict[str, Any]
) -> None:
    config = base_config if which == "base" else gpu_config
    for name in PROFILES:
        assert_hardened(config["services"][name], f"{which} {name}")
    # The only writable mounts: the trainer's registry and forecasts, MinIO's data (and /tmp above).
    writable = {
        name: sorted(target for target, (_, read_only) in mounts(service).items() if not read_only)
        for name, service in config["services"].items()
    }
    assert writable == {name: [] for name in PROFILES} | {"trainer": ["/forecasts", "/models"], "minio": ["/data"]}


def test_the_limits_can_be_raised_without_editing_the_file(compose_bin: str) -> None:
    raised = resolved_config(
        compose_bin,
        COMPOSE,
        args=("--profile", "s3", "config"),
        env={
            "FORECAST_API_MEMORY": "6g",
            "FORECAST_API_CPUS": "3",
            "FORECAST_TRAINER_MEMORY": "12g",
            "FORECAST_WORKERS": "3",
        },
    )
    api, trainer = raised["services"]["api"], raised["services"]["trainer"]
    assert memory_bytes(api["mem_limit"]) == 6 * 2**30 and float(api["cpus"]) == 3.0
    assert memory_bytes(trainer["mem_limit"]) == 12 * 2**30
    # The S3 profile's replicas and trainer take the same variables.
    for name in S3_REPLICAS:
        replica = raised["services"][name]
        assert memory_bytes(replica["mem_limit"]) == 6 * 2**30 and float(replica["cpus"]) == 3.0, name
        assert replica["environment"]["FORECAST_WORKERS"] == "3", name
    assert memory_bytes(raised["services"]["trainer-s3"]["mem_limit"]) == 12 * 2**30


@pytest.mark.parametrize(
    ("profile", "started"),
    [
        ("trainer", {"api", "trainer"}),
        ("s3", {"api", "minio", "minio-init", "api-s3-1", "api-s3-2", "proxy", "trainer-s3"}),
    ],
)
def test_each_profile_resolves_and_adds_its_services(
    compose_bin: str, base_config: dict[str, Any], profile: str, started: set[str]
) -> None:
    result = run_compose(compose_bin, COMPOSE, args=("--profile", profile, "config", "--services"))
    assert result.returncode == 0, result.stderr
    assert started <= set(result.stdout.split())
    assert active_services(base_config, profile) == started


def test_gpu_override_merges_a_gpu_reservation_and_the_cuda_build(
    base_config: dict[str, Any], gpu_config: dict[str, Any]
) -> None:
    assert set(gpu_config["services"]) == set(PROFILES)
    for name in FORECAST_SERVICES:
        service = gpu_config["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
        assert service["environment"]["FORECAST_DEVICE"] == "cuda", name
        base_environment = base_config["services"][name]["environment"]
        assert service["environment"]["FORECAST_REGISTRY"] == base_environment["FORECAST_REGISTRY"], name
        assert service.get("profiles") == base_config["services"][name].get("profiles"), name
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
    # MinIO, the bucket job and the proxy need no GPU.
    for name in set(PROFILES) - set(FORECAST_SERVICES):
        assert gpu_config["services"][name] == base_config["services"][name], name


# --- the S3 profile: MinIO, the bucket job, two API replicas behind nginx ----------------------


@pytest.fixture(scope="module")
def s3_config(compose_bin: str) -> dict[str, Any]:
    return resolved_config(compose_bin, COMPOSE, args=("--profile", "s3", "config"))


def s3_registry(service: dict[str, Any]) -> tuple[str, str]:
    """(bucket, prefix) of the service's FORECAST_REGISTRY, which must be an s3:// URL."""
    match = re.fullmatch(r"s3://([a-z0-9.-]+)/(\S+)", service["environment"]["FORECAST_REGISTRY"])
    assert match, service["environment"]["FORECAST_REGISTRY"]
    return match.group(1), match.group(2)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    found = service.get("depends_on", {})
    if isinstance(found, list):  # the short syntax: only started, not healthy or done
        return dict.fromkeys(found, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in found.items()}


def test_s3_profile_runs_two_replicas_of_the_api_on_the_s3_registry(s3_config: dict[str, Any]) -> None:
    services = s3_config["services"]
    api = services["api"]
    for name in S3_REPLICAS:
        replica = services[name]
        environment = replica["environment"]
        assert s3_registry(replica) == ("forecast", "models"), name
        assert environment["FORECAST_S3_ENDPOINT_URL"] == "http://minio:9000", name
        # The standard AWS chain's names, so boto3 finds them without any code of ours.
        assert environment["AWS_ACCESS_KEY_ID"] and environment["AWS_SECRET_ACCESS_KEY"], name
        # The same image and command as the single API; no registry on disk, no port of its own.
        assert replica["image"] == api["image"] and replica["build"] == api["build"], name
        assert replica["command"] == api["command"], name
        assert "/models" not in mounts(replica) and "ports" not in replica, name
        assert replica["restart"] == "unless-stopped", name
        # Healthy means ready (registry read, models loaded): the proxy waits for it.
        assert "/readyz" in healthcheck_command(replica) and ":8000/" in healthcheck_command(replica), name
        assert depends_on(replica) == {"minio-init": "service_completed_successfully"}, name
        assert int(environment["FORECAST_WORKERS"]) <= float(replica["cpus"]), name
    first, second = (services[name] for name in S3_REPLICAS)
    assert first == second, "the two replicas are the same service twice"


def test_s3_profile_has_minio_with_its_data_volume_and_a_one_shot_bucket_job(s3_config: dict[str, Any]) -> None:
    services = s3_config["services"]
    minio, init = services["minio"], services["minio-init"]
    assert re.fullmatch(r"minio/minio:RELEASE\.\S+", minio["image"]), "a pinned MinIO release, not latest"
    assert minio["command"][:2] == ["server", "/data"]
    assert "--address" in minio["command"] and minio["command"][minio["command"].index("--address") + 1] == ":9000"
    sources = {
        (volume.split(":")[1] if isinstance(volume, str) else volume["target"]): (
            volume.split(":")[0] if isinstance(volume, str) else volume["source"]
        )
        for volume in minio["volumes"]
    }
    assert sources == {"/data": "minio-data"}, "MinIO's data on a named volume, and nothing else mounted"
    assert "minio-data" in s3_config["volumes"]
    assert "mc" in healthcheck_command(minio) and "ready" in healthcheck_command(minio)
    assert "ports" not in minio, "MinIO is reachable from the compose network only"
    # The bucket job: MinIO's client, once, after MinIO is healthy, creating the registry's bucket.
    assert re.fullmatch(r"minio/mc:RELEASE\.\S+", init["image"])
    assert depends_on(init) == {"minio": "service_healthy"}
    script = " ".join(init["entrypoint"] + init["command"])
    bucket, _ = s3_registry(services["api-s3-1"])
    assert re.search(rf"mc .*\bmb --ignore-existing local/{bucket}\b", script), script
    assert "alias set local http://minio:9000" in script
    assert init.get("restart", "no") == "no" and healthcheck_command(init) == "NONE"
    assert "ports" not in init and init["user"].split(":")[0] != "0"
    # One set of credentials: MinIO's root user is what the replicas and the trainer sign with.
    for name in ("api-s3-1", "api-s3-2", "trainer-s3"):
        environment = services[name]["environment"]
        assert environment["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"], name
        assert environment["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"], name
    assert init["environment"] == minio["environment"]


def test_s3_credentials_come_from_the_environment(compose_bin: str) -> None:
    chosen = resolved_config(
        compose_bin,
        COMPOSE,
        args=("--profile", "s3", "config"),
        env={"MINIO_ROOT_USER": "someone", "MINIO_ROOT_PASSWORD": "a-long-real-secret"},
    )
    for name in ("api-s3-1", "api-s3-2", "trainer-s3"):
        environment = chosen["services"][name]["environment"]
        assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) == (
            "someone",
            "a-long-real-secret",
        ), name
    assert chosen["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == "a-long-real-secret"


def test_s3_trainer_writes_the_s3_registry_and_reads_data_read_only(s3_config: dict[str, Any]) -> None:
    services = s3_config["services"]
    trainer, local_trainer, replica = services["trainer-s3"], services["trainer"], services["api-s3-1"]
    for key in ("FORECAST_REGISTRY", "FORECAST_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert trainer["environment"][key] == replica["environment"][key], key
    assert mounts(trainer) == {"/data": ((ROOT / "data").resolve(), True)}, "no registry on disk, data read-only"
    assert trainer["image"] == replica["image"] and "entrypoint" not in trainer
    assert depends_on(trainer) == {"minio-init": "service_completed_successfully"}
    assert healthcheck_command(trainer) == "NONE" and trainer.get("restart", "no") == "no"
    assert "ports" not in trainer
    assert (trainer["mem_limit"], trainer["cpus"], trainer["tmpfs"]) == (
        local_trainer["mem_limit"],
        local_trainer["cpus"],
        local_trainer["tmpfs"],
    )


def test_s3_profile_publishes_the_proxy_alone_on_the_loopback_interface(
    compose_bin: str, s3_config: dict[str, Any]
) -> None:
    services = s3_config["services"]
    proxy = services["proxy"]
    assert published_ports(proxy) == [("127.0.0.1", "8080", "8080")]
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {"api", "proxy"}, "in the S3 profile only the proxy publishes (and the plain api)"
    chosen = resolved_config(
        compose_bin,
        COMPOSE,
        args=("--profile", "s3", "config"),
        env={"FORECAST_BIND": "10.0.0.5", "FORECAST_PROXY_PORT": "9090"},
    )
    assert published_ports(chosen["services"]["proxy"]) == [("10.0.0.5", "9090", "8080")]
    # The proxy starts once both replicas are ready, and reports readiness through itself.
    assert depends_on(proxy) == dict.fromkeys(S3_REPLICAS, "service_healthy")
    assert "127.0.0.1:8080/readyz" in healthcheck_command(proxy)
    assert mounts(proxy) == {"/etc/nginx/nginx.conf": (NGINX_CONF.resolve(), True)}
    # The unprivileged build: the stock image's root master needs the capabilities dropped here.
    assert proxy["image"].startswith("nginxinc/nginx-unprivileged:") and not proxy["image"].endswith(":latest")


# nginx.conf, read as nginx does: directives end in `;`, blocks in `{ }`, `#` starts a comment.


def nginx_blocks(text: str) -> list[tuple[str, list[str], list[Any] | None]]:
    tokens = re.findall(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};"\']+', re.sub(r"#[^\n]*", "", text))
    position = 0

    def block() -> list[tuple[str, list[str], list[Any] | None]]:
        nonlocal position
        found: list[tuple[str, list[str], list[Any] | None]] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                found.append((words[0], words[1:], None))
                words = []
            elif token == "{":
                found.append((words[0], words[1:], block()))
                words = []
            elif token == "}":
                assert not words, f"unterminated directive {words}"
                return found
            else:
                words.append(token.strip("\"'"))
        assert not words, f"unterminated directive {words}"
        return found

    return block()


def directives(blocks: list[Any], name: str) -> list[tuple[list[str], list[Any] | None]]:
    return [(args, children) for directive, args, children in blocks if directive == name]


def one(blocks: list[Any], name: str) -> list[str]:
    found = directives(blocks, name)
    assert len(found) == 1, f"{name}: {found}"
    return found[0][0]


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match, value
    return int(match.group(1)) * units[match.group(2) or "s"]


@pytest.fixture(scope="module")
def nginx_http() -> list[Any]:
    top = nginx_blocks(NGINX_CONF.read_text())
    (http,) = [children for _, children in directives(top, "http")]
    # Read-only root: the pid file and every temporary file on the /tmp tmpfs.
    assert one(top, "pid")[0].startswith("/tmp/")
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert one(http, f"{temp}_temp_path")[0].startswith("/tmp/"), temp
    return http


def served_port(service: dict[str, Any]) -> str:
    command = service["command"]
    return command[command.index("--port") + 1]


def test_proxy_round_robins_over_both_replicas_on_their_port(s3_config: dict[str, Any], nginx_http: list[Any]) -> None:
    services = s3_config["services"]
    (upstream,) = [children for _, children in directives(nginx_http, "upstream")]
    servers = [args[0] for args, _ in directives(upstream, "server")]
    assert servers == [f"{name}:{served_port(services[name])}" for name in S3_REPLICAS]
    for balancing in ("least_conn", "ip_hash", "hash", "random"):
        assert not directives(upstream, balancing), f"{balancing}: round-robin is asked for"
    (server,) = [children for _, children in directives(nginx_http, "server")]
    assert one(server, "listen") == [published_ports(services["proxy"])[0][2]]
    (root,) = [children for args, children in directives(server, "location") if args == ["/"]]
    assert one(root, "proxy_pass") == ["http://forecast_api"]
    # Keep-alive connections to the replicas: HTTP/1.1 without `Connection: close`.
    assert directives(upstream, "keepalive")
    assert one(server, "proxy_http_version") == ["1.1"]
    assert ["Connection", ""] in [args for args, _ in directives(server, "proxy_set_header")]


def test_proxy_has_the_hardening_the_readme_asks_for(nginx_http: list[Any]) -> None:
    """docs/guides/security.md, "Transport limits and running behind a proxy": body size, header buffers, timeouts,
    per-address limits, whole-body buffering, keep-alive to the server shorter than its own, and
    /metrics off the public side; the numbers against the server's defaults (the replicas keep them)."""
    from forecast.settings import Settings

    server_default = {name: field.default for name, field in Settings.model_fields.items()}
    (upstream,) = [children for _, children in directives(nginx_http, "upstream")]
    (server,) = [children for _, children in directives(nginx_http, "server")]
    assert memory_bytes(one(nginx_http, "client_max_body_size")[0]) == server_default["max_body_bytes"]
    count, size = one(nginx_http, "large_client_header_buffers")
    assert int(count) >= 2 and memory_bytes(size) >= server_default["max_header_bytes"]
    assert seconds(one(nginx_http, "client_header_timeout")[0]) <= server_default["header_timeout_s"]
    assert seconds(one(nginx_http, "client_body_timeout")[0]) <= server_default["body_timeout_s"]
    assert seconds(one(nginx_http, "send_timeout")[0]) <= server_default["send_timeout_s"]
    assert seconds(one(upstream, "keepalive_timeout")[0]) < server_default["keep_alive_timeout_s"]
    assert seconds(one(server, "proxy_read_timeout")[0]) > server_default["request_timeout_s"]
    assert one(server, "proxy_request_buffering") == ["on"]
    zones = {
        name: re.fullmatch(r"zone=([\w-]+):\w+", args[1]).group(1)  # type: ignore[union-attr]
        for name in ("limit_conn_zone", "limit_req_zone")
        for args, _ in directives(nginx_http, name)
    }
    assert one(server, "limit_conn")[0] == zones["limit_conn_zone"]
    assert one(server, "limit_req")[0] == f"zone={zones['limit_req_zone']}"
    assert one(nginx_http, "server_tokens") == ["off"]
    (metrics,) = [children for args, children in directives(server, "location") if args == ["=", "/metrics"]]
    assert not directives(metrics, "proxy_pass") and one(metrics, "return") == ["404"]


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
    for name in FORECAST_SERVICES:
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

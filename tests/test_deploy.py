"""The Kubernetes manifests in deploy/k8s/, validated offline.

No cluster runs here, so each manifest is validated against the Kubernetes OpenAPI schemas that
`kubernetes-validate` bundles (strict: an unknown or misspelt field fails, as `kubectl apply
--validate=strict` would), for the oldest and the newest Kubernetes minor it is checked with. Then
what a user relies on: the probes hit the server's /healthz and /readyz on the port it serves;
requests and limits are set; every pod runs as uid 10001 with a read-only root, no privilege
escalation, no capability and the runtime's seccomp profile; the CronJob runs `forecast train ...
--retrain --promote` once at a time, within a deadline, on input it can read; every Secret,
ConfigMap and claim a pod names exists with the keys it reads, and those keys are settings the
containers know; the placeholders cannot go live; the image is the one docker-compose.yml builds.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from forecast.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"

# The oldest Kubernetes minor the manifests are meant for (CronJob.spec.timeZone is GA since
# 1.27; every feature used here is GA by 1.30) and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30", latest_version())

UID = 10001
# The standard AWS chain's environment names (boto3 reads them without code of ours).
AWS_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"}
# Settings DESIGN.md names that issue 12 adds beside the current Settings class.
DESIGNED_SETTINGS = {"s3_endpoint_url", "workers"}
# uvicorn's cap on finishing in-flight requests after the listener closes (api/runtime/server.py).
IN_FLIGHT_DRAIN_S = 30


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    found = []
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                document["__file__"] = path.name
                found.append(document)
    return found


def without_file(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "__file__"}


def of_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def the(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = list(of_kind(resources, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


def workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in {"Deployment", "CronJob"}]


def quantity(value: str | int) -> float:
    """A Kubernetes quantity as a number: cores for CPU ("500m", "2"), bytes for memory."""
    text = str(value)
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    decimal = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in binary.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    if text[-1] in decimal:
        return float(text[:-1]) * decimal[text[-1]]
    return float(text)


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


# --- the files and the schemas ---------------------------------------------------------------


def test_the_kustomization_lists_every_manifest(kustomization: dict[str, Any]) -> None:
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [path.name for path in manifest_files()]
    assert kustomization["namespace"] == "forecast"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(resources: list[dict[str, Any]], version: str) -> None:
    assert {r["kind"] for r in resources} >= {
        "Deployment",
        "Service",
        "CronJob",
        "Secret",
        "ConfigMap",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    }
    failures = []
    for resource in resources:
        name = f"{resource['__file__']}: {resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(without_file(resource), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{name}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.append(f"{name}: {error.message}")
    assert not failures, "\n".join(failures)


def test_the_validator_catches_a_misspelt_field(resources: list[dict[str, Any]]) -> None:
    """The check above is real: a typo that kubectl would reject fails here too."""
    broken = copy.deepcopy(without_file(the(resources, "Deployment")))
    container = pod_spec(broken)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="'readinesProbe' was unexpected"):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def test_names_are_unique_per_kind(resources: list[dict[str, Any]]) -> None:
    names = [(r["kind"], r["metadata"]["name"]) for r in resources]
    assert len(names) == len(set(names))


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(resources: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = the(resources, "Deployment")
    (container,) = pod_spec(deployment)["containers"]
    return container


def test_the_api_runs_two_replicas_that_roll_without_losing_capacity(resources: list[dict[str, Any]]) -> None:
    deployment = the(resources, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0, "an old pod goes only once a new one is ready"
    budget = the(resources, "PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"], "a drain can proceed, one serves"


def test_the_probes_hit_the_servers_health_paths_on_its_port(api: dict[str, Any]) -> None:
    command = api["command"]
    assert command[:2] == ["forecast", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    named = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert named == {"http": port}

    def target(probe: dict[str, Any]) -> tuple[str, int]:
        get = probe["httpGet"]
        return get["path"], named.get(get["port"], get["port"])

    assert target(api["readinessProbe"]) == ("/readyz", port), "readiness: the registry read, the models loaded"
    assert target(api["livenessProbe"]) == ("/healthz", port), "liveness never waits on the registry"
    assert target(api["startupProbe"]) == ("/healthz", port)
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "a first start gets a minute or more"
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert api[kind]["timeoutSeconds"] < api[kind]["periodSeconds"], kind


def test_the_service_reaches_the_api_pods_on_their_port(resources: list[dict[str, Any]], api: dict[str, Any]) -> None:
    service = the(resources, "Service")
    deployment = the(resources, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "no node port or cloud load balancer"
    container_ports = {p["name"] for p in api["ports"]} | {p["containerPort"] for p in api["ports"]}
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports


def test_the_termination_grace_outlasts_the_servers_drain(resources: list[dict[str, Any]], api: dict[str, Any]) -> None:
    """On SIGTERM the server fails readiness, serves on for FORECAST_SHUTDOWN_GRACE_S while the
    endpoint removal spreads, then finishes in-flight requests: Kubernetes must not SIGKILL first."""
    grace = float(container_env(api)["FORECAST_SHUTDOWN_GRACE_S"]["value"])
    assert grace >= 5, "long enough for kube-proxy and ingresses to drop the endpoint"
    server = (ROOT / "api" / "runtime" / "server.py").read_text()
    drain = re.search(r"(?:timeout_graceful_shutdown=|_GRACEFUL_SHUTDOWN_S\s*=\s*)(\d+)", server)
    in_flight = int(drain.group(1)) if drain else IN_FLIGHT_DRAIN_S
    spec = pod_spec(the(resources, "Deployment"))
    assert spec["terminationGracePeriodSeconds"] > grace + in_flight
    assert "lifecycle" not in api, "the drain is the server's own; a preStop sleep would add to it"


def test_the_api_has_requests_and_limits_and_workers_within_them(api: dict[str, Any]) -> None:
    resources = api["resources"]
    for name in ("cpu", "memory"):
        assert quantity(resources["requests"][name]) <= quantity(resources["limits"][name]), name
    assert 256 * 2**20 <= quantity(resources["limits"]["memory"]) <= 64 * 2**30
    env = container_env(api)
    threads = int(env["FORECAST_TORCH_THREADS"]["value"]) or 1
    assert int(env["FORECAST_WORKERS"]["value"]) * threads <= quantity(resources["limits"]["cpu"])


def test_the_api_reads_its_keys_from_the_secrets_file_not_its_environment(
    resources: list[dict[str, Any]], api: dict[str, Any]
) -> None:
    path = Path(container_env(api)["FORECAST_API_KEYS"]["value"])
    assert "/" in str(path), "a path: the server reads a file of salted hashes"
    (mount,) = [m for m in api["volumeMounts"] if path.parent == Path(m["mountPath"])]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in pod_spec(the(resources, "Deployment"))["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    items = {item["path"]: item["key"] for item in secret.get("items", [])}
    key = items.get(path.name, path.name)
    assert key in of_kind(resources, "Secret")[secret["secretName"]]["stringData"]
    # Readable by uid 10001 through the pod's fsGroup (the files belong to root).
    assert secret["defaultMode"] & 0o040 and not secret["defaultMode"] & 0o007
    assert pod_spec(the(resources, "Deployment"))["securityContext"]["fsGroup"] == UID


# --- every pod -------------------------------------------------------------------------------


def test_every_pod_is_locked_down(resources: list[dict[str, Any]]) -> None:
    for workload in workloads(resources):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == UID and pod["runAsGroup"] == UID, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, f"{name}: no Kubernetes API token"
        assert spec["enableServiceLinks"] is False, f"{name}: no injected FORECAST_API_PORT & co."
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{name}: {key}"
        assert not spec.get("initContainers"), name
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context.get("privileged", False) is False, where
            assert context["runAsNonRoot"] is True and context.get("runAsUser", UID) == UID, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests), where
            # /tmp, the one writable place, a bounded emptyDir (the image caches there).
            volumes = {v["name"]: v for v in spec["volumes"]}
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert 0 < quantity(volumes[tmp["name"]]["emptyDir"]["sizeLimit"]) <= 2**30, where
            writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
            # Beside /tmp only batch scoring writes, and only its output claim (the registry is S3).
            output = ["/forecasts"] if container.get("command", [])[:2] == ["forecast", "predict"] else []
            assert writable == ["/tmp", *output], f"{where}: writes only /tmp and its output"


def test_the_namespace_enforces_the_restricted_pod_security_standard(
    resources: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    namespace = the(resources, "Namespace")
    assert namespace["metadata"]["name"] == kustomization["namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_reference_resolves_to_an_object_with_that_key(resources: list[dict[str, Any]]) -> None:
    stores = {
        "configMap": {name: set(r.get("data", {})) for name, r in of_kind(resources, "ConfigMap").items()},
        "secret": {
            name: set(r.get("stringData", {})) | set(r.get("data", {}))
            for name, r in of_kind(resources, "Secret").items()
        },
    }
    claims = set(of_kind(resources, "PersistentVolumeClaim"))
    for workload in workloads(resources):
        spec = pod_spec(workload)
        for container in spec["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            for source in container.get("envFrom", []):
                for kind in ("configMap", "secret"):
                    if f"{kind}Ref" in source:
                        assert source[f"{kind}Ref"]["name"] in stores[kind], f"{where}: {source}"
                        assert not source[f"{kind}Ref"].get("optional"), f"{where}: {source} may not be missing"
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                for kind in ("configMap", "secret"):
                    if f"{kind}KeyRef" in ref:
                        store = stores[kind].get(ref[f"{kind}KeyRef"]["name"])
                        assert store is not None and ref[f"{kind}KeyRef"]["key"] in store, f"{where}: {item}"
            mounted = {m["name"] for m in container["volumeMounts"]}
            assert mounted <= {v["name"] for v in spec["volumes"]}, where
        for volume in spec["volumes"]:
            if "secret" in volume:
                keys = stores["secret"][volume["secret"]["secretName"]]
                assert {item["key"] for item in volume["secret"].get("items", [])} <= keys, volume
            if "configMap" in volume:
                keys = stores["configMap"][volume["configMap"]["name"]]
                assert {item["key"] for item in volume["configMap"].get("items", [])} <= keys, volume
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, volume


def environment_names(resources: list[dict[str, Any]], container: dict[str, Any]) -> set[str]:
    names = set(container_env(container))
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(of_kind(resources, "ConfigMap")[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            names |= set(of_kind(resources, "Secret")[source["secretRef"]["name"]]["stringData"])
    return names


def test_every_variable_is_one_the_containers_read(resources: list[dict[str, Any]]) -> None:
    """A misspelt FORECAST_ name would be ignored silently by the server (its settings ignore
    unknown names): every name must be a setting, one DESIGN.md adds, or the AWS chain's."""
    known = {f"FORECAST_{name.upper()}" for name in {*Settings.model_fields, *DESIGNED_SETTINGS}} | AWS_NAMES
    for workload in workloads(resources):
        for container in pod_spec(workload)["containers"]:
            unknown = environment_names(resources, container) - known
            assert not unknown, f"{workload['metadata']['name']}: {sorted(unknown)}"


def test_the_settings_are_valid_and_put_the_registry_on_s3(resources: list[dict[str, Any]]) -> None:
    (config,) = of_kind(resources, "ConfigMap").values()
    data = config["data"]
    assert re.fullmatch(r"s3://[a-z0-9.-]+/\S+", data["FORECAST_REGISTRY"])
    assert data["FORECAST_S3_ENDPOINT_URL"].startswith(("http://", "https://"))
    assert float(data["FORECAST_RELOAD_SECONDS"]) > 0
    # The values parse as the server's and the trainer's settings do.
    for workload in workloads(resources):
        for container in pod_spec(workload)["containers"]:
            values = dict(data) | {
                name: item["value"] for name, item in container_env(container).items() if "value" in item
            }
            given = {
                name.removeprefix("FORECAST_").lower(): value
                for name, value in values.items()
                if name.startswith("FORECAST_") and name.removeprefix("FORECAST_").lower() in Settings.model_fields
            }
            settings = Settings(**given)
            assert settings.registry == data["FORECAST_REGISTRY"]
    # Every pod that reads the registry gets the credentials with it.
    for workload in workloads(resources):
        for container in pod_spec(workload)["containers"]:
            names = environment_names(resources, container)
            assert {"FORECAST_REGISTRY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= names, workload["metadata"]


def test_the_secrets_hold_marked_placeholders_that_cannot_go_live(
    resources: list[dict[str, Any]], tmp_path: Path
) -> None:
    from api.access.keys import parse_key_file
    from forecast.errors import InvalidSetting

    secrets = of_kind(resources, "Secret")
    assert "data" not in secrets["forecast-s3-credentials"], "readable placeholders, not base64"
    for name, value in secrets["forecast-s3-credentials"]["stringData"].items():
        assert value == "REPLACE_ME", name
    assert "PLACEHOLDERS" in (K8S / "secret.yaml").read_text()
    # The key file holds no key: a server started on it stops with one line instead of running open.
    keys = tmp_path / "keys.txt"
    keys.write_text(secrets["forecast-api-keys"]["stringData"]["keys.txt"])
    assert "REPLACE_ME" in keys.read_text()
    with pytest.raises(InvalidSetting, match="holds no keys"):
        parse_key_file(keys)
    # The trainer needs no API key.
    cronjob = of_kind(resources, "CronJob")["forecast-retrain-demand"]
    mounted = {v.get("secret", {}).get("secretName") for v in pod_spec(cronjob)["volumes"]}
    referenced = {s.get("secretRef", {}).get("name") for c in pod_spec(cronjob)["containers"] for s in c["envFrom"]}
    assert "forecast-api-keys" not in mounted | referenced


# --- the retraining CronJob ------------------------------------------------------------------


def test_the_cronjob_retrains_and_promotes_once_at_a_time_within_a_deadline(resources: list[dict[str, Any]]) -> None:
    cronjob = of_kind(resources, "CronJob")["forecast-retrain-demand"]
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid", "two retrains of one model at once would race for production"
    assert len(spec["schedule"].split()) == 5
    job = spec["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 3
    assert 0 < job["activeDeadlineSeconds"] <= 24 * 3600, "a hung run ends before the next is due"
    pod = pod_spec(cronjob)
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    (trainer,) = pod["containers"]
    command = trainer["command"]
    assert command[:2] == ["forecast", "train"]
    assert {"--retrain", "--promote"} <= set(command)
    assert "--if-degraded" in command, "the nightly run retrains only when production lost its edge"
    assert "--force" not in command, "the baseline gate stays on for unattended runs"
    for flag in ("--data", "--name"):
        assert flag in command and not command[command.index(flag) + 1].startswith("-"), flag
    # --data is a file on a volume the job mounts read-only, from the claim the data lands on.
    data = Path(command[command.index("--data") + 1])
    (mount,) = [m for m in trainer["volumeMounts"] if data.is_relative_to(m["mountPath"])]
    assert mount["mountPath"] != "/tmp" and mount.get("readOnly") is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in of_kind(resources, "PersistentVolumeClaim")


def test_the_scoring_cronjob_predicts_after_the_retraining_into_a_writable_claim(
    resources: list[dict[str, Any]],
) -> None:
    cronjobs = of_kind(resources, "CronJob")
    scoring, retraining = cronjobs["forecast-predict-demand"], cronjobs["forecast-retrain-demand"]
    assert scoring["spec"]["concurrencyPolicy"] == "Forbid"
    hour = int(scoring["spec"]["schedule"].split()[1])
    assert hour > int(retraining["spec"]["schedule"].split()[1]), "it scores with what the retraining promoted"
    pod = pod_spec(scoring)
    (scorer,) = pod["containers"]
    command = scorer["command"]
    assert command[:2] == ["forecast", "predict"]
    out = Path(command[command.index("--out") + 1])
    assert out.suffix in {".csv", ".parquet"}
    (mount,) = [m for m in scorer["volumeMounts"] if out.is_relative_to(m["mountPath"])]
    assert not mount.get("readOnly") and mount["mountPath"] != "/tmp"
    claim = {v["name"]: v for v in pod["volumes"]}[mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in of_kind(resources, "PersistentVolumeClaim")
    (retrainer,) = pod_spec(retraining)["containers"]
    assert flag_value(command, "--name") == flag_value(retrainer["command"], "--name"), "it scores what was retrained"


def flag_value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


# --- one image -------------------------------------------------------------------------------


def test_the_image_is_the_one_compose_builds(resources: list[dict[str, Any]], kustomization: dict[str, Any]) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    image = compose["api"]["image"]
    assert compose["trainer"]["image"] == image
    name, _, tag = image.rpartition(":")
    for workload in workloads(resources):
        for container in pod_spec(workload)["containers"]:
            assert container["image"] == image, workload["metadata"]["name"]
            assert container["imagePullPolicy"] == "IfNotPresent", "a locally loaded image is used as it is"
    (override,) = [entry for entry in kustomization["images"] if entry["name"] == name]
    assert (override["newName"], override["newTag"]) == (name, tag)

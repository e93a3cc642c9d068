"""The cluster configs under cluster/ are ones Ray accepts and that keep the design's promises.

Launcher YAMLs go through Ray's own offline path: `prepare_config` (merge the provider's
defaults, per-type worker bounds) then `validate_config` (Ray's JSON schema and cross-checks).
Neither contacts a cloud; the tests forbid network connections to prove it. The fake provider's
defaults file is not shipped in Ray's wheel, so cluster/local.yaml carries the full key set and
serves as its own defaults.
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private import providers
from ray.autoscaler._private.util import prepare_config, validate_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = REPO_ROOT / "cluster"
CLOUD_CONFIGS = {"aws.yaml": "s3://", "gcp.yaml": "gs://"}
LOCAL_CONFIG = CLUSTER_DIR / "local.yaml"
KUBERAY_MANIFEST = CLUSTER_DIR / "kuberay.yaml"
PLACEHOLDER = re.compile(r"<[A-Z0-9][A-Z0-9-]*>")
SWEEP_ENTRYPOINT = "python pipeline/sweep.py dsprites --profile paper"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach a cloud API fails the test instead of hanging or succeeding."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def prepared(name: str) -> dict[str, Any]:
    config = prepare_config(load(CLUSTER_DIR / name))
    validate_config(config)
    return config


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: node_type
        for name, node_type in config["available_node_types"].items()
        if name != config["head_node_type"]
    }


def head_type(config: dict[str, Any]) -> dict[str, Any]:
    return config["available_node_types"][config["head_node_type"]]


def exported(commands: list[str], variable: str) -> list[str]:
    """Values that `export NAME=value ...` statements in the commands give to `variable`."""
    values = []
    for command in commands:
        for assignments in re.findall(r"\bexport\s+([^;]+)", command):
            for assignment in assignments.split():
                name, _, value = assignment.partition("=")
                if name == variable:
                    values.append(value)
    return values


def command_with(commands: list[str], marker: str) -> str:
    matches = [command for command in commands if marker in command]
    assert len(matches) == 1, f"expected one command containing {marker!r}, found {matches}"
    return matches[0]


def option(command: str, name: str) -> str:
    words = command.split()
    return words[words.index(name) + 1]


@pytest.mark.parametrize("name", sorted(CLOUD_CONFIGS))
def test_cloud_config_passes_ray_validation(name: str) -> None:
    config = prepared(name)
    assert config["provider"]["type"] == name.removesuffix(".yaml")
    assert head_type(config)["max_workers"] == 0


def test_validation_rejects_a_broken_config() -> None:
    unknown_field = load(CLUSTER_DIR / "aws.yaml")
    unknown_field["available_node_types"]["ray.worker.gpu1"]["gpus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(unknown_field))

    missing_head = load(CLUSTER_DIR / "gcp.yaml")
    missing_head["head_node_type"] = "ray_head_missing"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(missing_head))


@pytest.mark.parametrize("name", sorted(CLOUD_CONFIGS))
def test_head_runs_no_training_and_hosts_mlflow(name: str) -> None:
    config = prepared(name)
    assert head_type(config)["resources"] == {"CPU": 0}
    start_ray = command_with(config["head_start_ray_commands"], "ray start --head")
    assert "--num-cpus=0" in start_ray.split()

    server = command_with(config["head_start_ray_commands"], "mlflow server")
    backend = option(server, "--backend-store-uri")
    # A database on the head's own disk, written by this server process alone.
    assert backend.startswith("sqlite:///$HOME/")
    assert option(server, "--artifacts-destination").startswith(CLOUD_CONFIGS[name])
    assert option(server, "--host") == "0.0.0.0"
    assert option(server, "--port") == "5000"
    assert config["head_start_ray_commands"].index(server) < config[
        "head_start_ray_commands"
    ].index(start_ray)


@pytest.mark.parametrize("name", sorted(CLOUD_CONFIGS))
def test_gpu_workers_scale_from_zero_on_spot(name: str) -> None:
    config = prepared(name)
    workers = worker_types(config)
    gpus = sorted(node_type["resources"]["GPU"] for node_type in workers.values())
    assert gpus[0] == 1 and gpus[-1] > 1, "a one-GPU and a multi-GPU worker type"
    assert 0 < config["idle_timeout_minutes"] <= 30
    for node_type in workers.values():
        assert node_type["min_workers"] == 0
        assert 0 < node_type["max_workers"] <= config["max_workers"]
        node_config = node_type["node_config"]
        if config["provider"]["type"] == "aws":
            assert node_config["InstanceMarketOptions"]["MarketType"] == "spot"
        else:
            assert node_config["scheduling"]["provisioningModel"] == "SPOT"
            assert node_config["scheduling"]["onHostMaintenance"] == "TERMINATE"
    if config["provider"]["type"] == "aws":
        assert config["provider"]["cache_stopped_nodes"] is False


@pytest.mark.parametrize("name", sorted(CLOUD_CONFIGS))
def test_every_node_reaches_tracking_server_and_storage(name: str) -> None:
    config = prepared(name)
    head_commands = config["head_start_ray_commands"]
    worker_commands = config["worker_start_ray_commands"]

    head_uri = exported(head_commands, "MLFLOW_TRACKING_URI")
    worker_uri = exported(worker_commands, "MLFLOW_TRACKING_URI")
    assert head_uri == ["http://$HEAD_IP:5000"]
    assert "HEAD_IP=$(hostname -I" in command_with(head_commands, "ray start --head")
    assert worker_uri == ["http://$RAY_HEAD_IP:5000"]

    storage = exported(head_commands, "TCWAE_STORAGE")
    assert storage == exported(worker_commands, "TCWAE_STORAGE")
    assert len(storage) == 1 and storage[0].startswith(CLOUD_CONFIGS[name])
    artifacts = option(command_with(head_commands, "mlflow server"), "--artifacts-destination")
    assert artifacts.split("/")[2] == storage[0].split("/")[2], "one bucket for both"


@pytest.mark.parametrize("name", sorted(CLOUD_CONFIGS))
def test_setup_installs_this_project_with_the_client_ray(name: str) -> None:
    config = prepared(name)
    install = command_with(config["setup_commands"], "pip install")
    assert f'"ray[default,tune,train]=={ray.__version__}"' in install
    assert re.search(r"\btorch==\d+\.\d+\.\d+\b", install)
    assert "-e ~/tcwae" in install
    assert config["file_mounts"]
    for remote, local in config["file_mounts"].items():
        assert remote.startswith("~/tcwae/")
        assert (REPO_ROOT / local).exists(), f"file mount source {local} missing"
    assert "pyproject.toml" in config["file_mounts"].values()


def test_local_config_is_complete_for_the_fake_autoscaler(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = load(LOCAL_CONFIG)
    assert raw["provider"]["type"] == "fake_multinode"
    # The monitor reads this file as is (no defaults merged), so it must hold every key that a
    # provider's shipped defaults hold.
    aws_defaults = load(Path(providers._load_aws_defaults_config()))
    assert set(aws_defaults) <= set(raw)
    validate_config(raw)

    # prepare_config would load the fake provider's defaults from a file the wheel lacks; this
    # file is complete, so it stands in for them and preparing it changes nothing it declares.
    monkeypatch.setitem(providers._DEFAULT_CONFIGS, "fake_multinode", lambda: str(LOCAL_CONFIG))
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    assert {key: config[key] for key in raw} == raw


def test_local_config_adds_small_nodes_and_removes_them_quickly() -> None:
    config = load(LOCAL_CONFIG)
    assert head_type(config)["resources"]["CPU"] == 0
    assert head_type(config)["max_workers"] == 0
    assert config["idle_timeout_minutes"] <= 0.25
    workers = worker_types(config)
    assert workers
    for node_type in workers.values():
        assert node_type["min_workers"] == 0
        assert 0 < node_type["max_workers"] <= config["max_workers"]
        assert node_type["resources"]["CPU"] >= 1
        assert "GPU" not in node_type["resources"], "fake GPUs would send torch to CUDA"


def kuberay_documents() -> dict[str, dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(KUBERAY_MANIFEST.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents), "one document of each kind"
    return by_kind


def test_kuberay_rayjob_autoscales_gpu_workers_from_zero() -> None:
    job = kuberay_documents()["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"] == SWEEP_ENTRYPOINT
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    groups = cluster["workerGroupSpecs"]
    gpus = []
    for group in groups:
        assert group["minReplicas"] == 0 and group["replicas"] == 0
        assert group["maxReplicas"] > 0
        (container,) = group["template"]["spec"]["containers"]
        gpus.append(container["resources"]["limits"]["nvidia.com/gpu"])
    assert min(gpus) == 1 and max(gpus) > 1


def test_kuberay_pods_reach_the_tracking_server_and_storage() -> None:
    documents = kuberay_documents()
    cluster = documents["RayJob"]["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    service = documents["Service"]
    expected_uri = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["MLFLOW_TRACKING_URI"] == expected_uri
        assert env["TCWAE_STORAGE"].startswith(("s3://", "gs://"))

    mlflow = documents["Deployment"]["spec"]
    assert mlflow["replicas"] == 1 and mlflow["strategy"]["type"] == "Recreate"
    (server,) = mlflow["template"]["spec"]["containers"]
    command = " ".join(server["command"])
    assert command.startswith("mlflow server")
    (mount,) = server["volumeMounts"]
    assert option(command, "--backend-store-uri") == f"sqlite:///{mount['mountPath']}/mlflow.db"
    assert documents["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_images_and_pins_agree_on_the_ray_version() -> None:
    dockerfile = (CLUSTER_DIR / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)-py311-gpu$", dockerfile, re.MULTILINE)
    assert base and base.group(1) == ray.__version__


def test_every_placeholder_is_documented() -> None:
    readme = (CLUSTER_DIR / "README.md").read_text()
    placeholders = {
        placeholder
        for path in CLUSTER_DIR.iterdir()
        if path.name != "README.md"
        for placeholder in PLACEHOLDER.findall(path.read_text())
    }
    assert placeholders, "the cloud configs name the account values a user fills in"
    undocumented = sorted(p for p in placeholders if p not in readme)
    assert not undocumented, f"placeholders missing from cluster/README.md: {undocumented}"

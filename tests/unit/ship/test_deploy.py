"""comfypack.ship.deploy: the BentoCloud deployment config (``--dry-run``), the missing-login error,
and Kubernetes manifests validated offline against the Kubernetes OpenAPI schemas
(``kubernetes-validate`` ships them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.errors import WorkflowError
from comfypack.files.hashing import HashCache
from comfypack.lock.create import create_lock
from comfypack.pack.archive import create_pack
from comfypack.ship.bento_context import IMAGE_WORKSPACE
from comfypack.ship.build import BuildOptions, plan_build
from comfypack.ship.deploy import (
    LOGIN_HINT,
    MODEL_CACHE_PATH,
    KubernetesOptions,
    bentocloud_config,
    kubernetes_manifests,
)

from .._lock_helpers import fake_env


def _kv():
    """kubernetes-validate (the dev extra): it ships the Kubernetes OpenAPI schemas."""
    return pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]'")


def _versions() -> tuple[str, ...]:
    return ("1.28.0", _kv().latest_version())


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("COMFYPACK_HOME", str(h))
    return h


@pytest.fixture
def pack(tmp_path, home):
    env = fake_env(tmp_path / "src", as_git=False, git_node=False)
    lock = create_lock(env.workflow_path, env.comfyui, resolvers=[], hash_cache=HashCache(None))
    return create_pack(env.workflow_path, env.comfyui, tmp_path / "my_flow.cpack.zip", lock=lock)


def _validate(doc: dict) -> None:
    for version in _versions():
        _kv().validate(doc, version, strict=True)


# -- BentoCloud ---------------------------------------------------------------------------------


def test_dry_run_prints_the_exact_deployment_config(pack):
    result = CliRunner().invoke(
        cli,
        [
            "deploy",
            str(pack),
            "--target",
            "bentocloud",
            "--dry-run",
            "--format",
            "json",
            "--name",
            "Flow_Prod",
            "--instance-type",
            "gpu.l4.1",
            "--scaling-min",
            "0",
            "--scaling-max",
            "3",
            "--gpu",
            "1",
            "--timeout",
            "120",
            "--env",
            "COMFYPACK_API_KEY=s3cret",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    plan = plan_build(pack, BuildOptions(gpu=1, timeout=120))
    assert config == bentocloud_config(
        plan,
        name="Flow_Prod",
        instance_type="gpu.l4.1",
        scaling_min=0,
        scaling_max=3,
        envs={"COMFYPACK_API_KEY": "s3cret"},
    )
    assert config["name"] == "flow-prod"  # a DNS label
    assert config["bento"] == f"my_flow:{plan.version}"
    assert config["access_authorization"] is True
    assert config["services"] == {
        "my_flow": {"scaling": {"min_replicas": 0, "max_replicas": 3}, "instance_type": "gpu.l4.1"}
    }
    envs = {e["name"]: e["value"] for e in config["envs"]}
    assert envs["COMFYPACK_PACK"] == "pack/my_flow.cpack.zip"
    assert envs["COMFYPACK_GPU"] == "1" and envs["COMFYPACK_TIMEOUT"] == "120"
    assert envs["COMFYPACK_WORKSPACE"] == IMAGE_WORKSPACE
    assert envs["COMFYPACK_API_KEY"] == "s3cret"


def test_dry_run_yaml_is_a_bentoml_deployment_file_and_builds_nothing(pack, tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    result = CliRunner().invoke(
        cli, ["deploy", str(pack), "--target", "bentocloud", "--dry-run", "--public"]
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output)
    assert list(config) == ["name", "bento", "access_authorization", "envs", "services"]
    assert config["access_authorization"] is False
    assert config["services"]["my_flow"] == {"scaling": {"min_replicas": 1, "max_replicas": 1}}
    assert not list((tmp_path / "bentoml").rglob("bento.yaml"))


def test_bad_scaling_is_a_usage_error(pack):
    with pytest.raises(WorkflowError, match="scaling"):
        bentocloud_config(plan_build(pack), scaling_min=3, scaling_max=2)


def test_missing_login_is_one_clear_line(pack, tmp_path):
    """An empty BENTOML_HOME has no BentoCloud context: exit 1, `bentoml cloud login`, no traceback."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BENTO_CLOUD_", "BENTOML_", "COMFYPACK_"))
    }
    env.update(
        BENTOML_HOME=str(tmp_path / "empty-bentoml"),
        COMFYPACK_HOME=str(tmp_path / "home"),
        COLUMNS="200",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "comfypack.cli", "deploy", str(pack), "--target", "bentocloud"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "bentoml cloud login" in lines[0] and LOGIN_HINT in lines[0]
    assert not list((tmp_path / "empty-bentoml").rglob("bento.yaml"))  # failed before building


# -- Kubernetes ---------------------------------------------------------------------------------


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas(pack, tmp_path):
    out = tmp_path / "k8s"
    result = CliRunner().invoke(
        cli,
        [
            "deploy",
            str(pack),
            "--target",
            "kubernetes",
            "-o",
            str(out),
            "--gpu",
            "1",
            "--image",
            "registry.example.com/my_flow:1",
            "--hpa-min",
            "1",
            "--hpa-max",
            "4",
            "--model-cache-size",
            "80Gi",
            "--storage-class",
            "efs",
            "--namespace",
            "ml",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["README.md", "deployment.yaml", "hpa.yaml", "pvc.yaml", "service.yaml"]
    docs = {f: yaml.safe_load((out / f).read_text()) for f in files if f.endswith(".yaml")}
    for doc in docs.values():
        _validate(doc)
        assert doc["metadata"]["namespace"] == "ml"

    dep = docs["deployment.yaml"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example.com/my_flow:1"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"] == "8Gi"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["ports"][0]["containerPort"] == 3000
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["COMFYPACK_HOME"] == MODEL_CACHE_PATH == mounts["model-cache"]
    assert (
        volumes["model-cache"]["persistentVolumeClaim"]["claimName"]
        == docs["pvc.yaml"]["metadata"]["name"]
    )
    assert mounts["tmp"] == "/tmp" and volumes["tmp"]["emptyDir"] == {}
    assert mounts["workspace-input"] == f"{IMAGE_WORKSPACE}/comfyui/input"
    assert "workspace-models" not in mounts  # the models folder links into the model cache volume
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"

    pvc = docs["pvc.yaml"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "80Gi"
    assert pvc["spec"]["storageClassName"] == "efs"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # several replicas share the cache
    svc = docs["service.yaml"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    hpa = docs["hpa.yaml"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]

    readme = (out / "README.md").read_text()
    tag = plan_build(pack, BuildOptions(gpu=1)).tag
    assert f"comfypack containerize {pack} --name my_flow --gpu 1 -t {tag}" in readme
    assert f"bentoml containerize {tag}` writes elsewhere and needs --writable-root" in readme
    assert "docker push registry.example.com/my_flow:1" in readme
    assert f"kubectl apply -n ml -f {out}" in readme


def test_default_manifests_one_replica_cpu_no_hpa(pack):
    manifests = kubernetes_manifests(plan_build(pack))
    assert sorted(manifests) == ["deployment.yaml", "pvc.yaml", "service.yaml"]
    for doc in manifests.values():
        _validate(doc)
    dep = manifests["deployment.yaml"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert c["image"] == plan_build(pack).tag
    assert dep["spec"]["strategy"]["type"] == "Recreate"  # a ReadWriteOnce cache: no overlap
    assert manifests["pvc.yaml"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    writable = kubernetes_manifests(plan_build(pack), KubernetesOptions(read_only_root=False))
    (c,) = writable["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is False


@pytest.mark.parametrize("breakage", ["replicas", "probe", "unknown-field", "gpu-quantity"])
def test_a_broken_manifest_fails_validation(pack, breakage):
    dep = kubernetes_manifests(plan_build(pack), KubernetesOptions(gpu=1))["deployment.yaml"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    if breakage == "replicas":
        dep["spec"]["replicas"] = "two"
    elif breakage == "probe":
        c["readinessProbe"]["httpGet"]["path"] = 42
    elif breakage == "unknown-field":
        c["securityContext"]["runAsNonRootPlease"] = True
    else:
        c["resources"]["limits"]["nvidia.com/gpu"] = {"count": 1}
    kv = _kv()
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, _versions()[-1], strict=True)


def test_kubernetes_needs_an_output_dir(pack):
    result = CliRunner().invoke(cli, ["deploy", str(pack), "--target", "kubernetes"])
    assert result.exit_code == 2
    assert "-o DIR" in result.output


def test_kubernetes_dry_run_prints_every_manifest(pack):
    result = CliRunner().invoke(cli, ["deploy", str(pack), "--target", "kubernetes", "--dry-run"])
    assert result.exit_code == 0, result.output
    kinds = [d["kind"] for d in yaml.safe_load_all(result.output)]
    assert kinds == ["Deployment", "Service", "PersistentVolumeClaim"]


def _bentoml_modules():
    import importlib

    return importlib.import_module("bentoml.bentos"), importlib.import_module("bentoml.deployment")


def test_deploy_pushes_then_creates_or_updates_through_bentomls_api(pack, monkeypatch):
    from bentoml.exceptions import NotFound

    from comfypack.ship.deploy import deploy_bentocloud

    bentos, deployment = _bentoml_modules()

    config = bentocloud_config(plan_build(pack))
    calls: list[tuple[str, object]] = []
    existing: set[str] = set()

    def get(name, cluster=None):
        calls.append(("get", name))
        if name not in existing:
            raise NotFound(f"deployment {name} not found")
        return object()

    monkeypatch.setattr(bentos, "push", lambda tag: calls.append(("push", tag)))
    monkeypatch.setattr(deployment, "get", get)
    monkeypatch.setattr(
        deployment, "create", lambda config_dict: calls.append(("create", config_dict)) or "new"
    )
    monkeypatch.setattr(
        deployment,
        "update",
        lambda name, cluster, config_dict: calls.append(("update", config_dict)) or "upd",
    )
    assert deploy_bentocloud(config) == ("created", "new")
    assert calls == [("push", config["bento"]), ("get", "my-flow"), ("create", config)]
    calls.clear()
    existing.add("my-flow")
    assert deploy_bentocloud(config) == ("updated", "upd")
    assert calls == [("push", config["bento"]), ("get", "my-flow"), ("update", config)]


def test_a_cloud_failure_is_a_deploy_error_with_its_first_line(pack, monkeypatch):
    from bentoml.exceptions import BentoMLException

    from comfypack.errors import DeployError
    from comfypack.ship.deploy import deploy_bentocloud

    def push(tag):
        raise BentoMLException("upload failed: 500\nlong server trace")

    monkeypatch.setattr(_bentoml_modules()[0], "push", push)
    with pytest.raises(
        DeployError, match=r"pushing my_flow:\w+ to BentoCloud failed: upload failed: 500$"
    ):
        deploy_bentocloud(bentocloud_config(plan_build(pack)))

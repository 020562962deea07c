"""comfypack.ship.containerize without building: the image's run-time contract, its Containerfile and
build step, the host's index settings passed through (never written into the image), and the
Kubernetes manifests written from that same contract — the HPA on the queue depth and the KEDA
ScaledObject validated offline (kubernetes-validate; KEDA's CRD models from cloudcoil-models-keda).
The real build and run: tests/container (`make test-container`)."""

from __future__ import annotations

import pytest

from comfypack.errors import WorkflowError
from comfypack.ship.bento_context import IMAGE_WORKSPACE
from comfypack.ship.build import plan_build
from comfypack.ship.containerize import (
    IMAGE_PORT,
    IMAGE_UID,
    MODEL_CACHE_PATH,
    build_script,
    containerfile,
    host_index_settings,
    image_config,
)
from comfypack.ship.deploy import QUEUE_METRIC, KubernetesOptions, kubernetes_manifests

from .._lock_helpers import fake_env
from .test_deploy import _validate

SHA = "0123456789abcdef" * 4


@pytest.fixture
def pack(tmp_path, monkeypatch):
    from comfypack.files.hashing import HashCache
    from comfypack.lock.create import create_lock
    from comfypack.pack.archive import create_pack

    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))
    env = fake_env(tmp_path / "src", as_git=False, git_node=False)
    lock = create_lock(env.workflow_path, env.comfyui, resolvers=[], hash_cache=HashCache(None))
    return create_pack(env.workflow_path, env.comfyui, tmp_path / "my_flow.cpack.zip", lock=lock)


def test_the_contract_is_non_root_with_every_written_path_a_volume():
    cfg = image_config(
        {"COMFYPACK_WORKSPACE": IMAGE_WORKSPACE, "COMFYPACK_ENDPOINT": "generate"}, SHA
    )
    assert cfg.uid == IMAGE_UID != 0 and cfg.user == f"{IMAGE_UID}:{IMAGE_UID}"
    assert cfg.env["COMFYPACK_HOME"] == MODEL_CACHE_PATH and cfg.env["BENTOML_PORT"] == str(
        IMAGE_PORT
    )
    assert cfg.env["COMFYPACK_ENDPOINT"] == "generate"  # the Bento's own settings go in
    assert set(cfg.volumes) == {MODEL_CACHE_PATH, "/tmp", f"{IMAGE_WORKSPACE}/comfyui/input"}
    # the workspace's models live in the cache volume (hard links from the cache: no copies)
    assert cfg.models_dir == f"{MODEL_CACHE_PATH}/workspaces/{SHA[:16]}/models"
    for var in ("BENTOML_HOME", "HOME"):  # what BentoML and libraries write goes to a volume
        assert any(cfg.env[var].startswith(v + "/") for v in cfg.volumes), var


def test_containerfile_runs_one_build_step_and_ends_as_the_user():
    cfg = image_config({"COMFYPACK_WORKSPACE": IMAGE_WORKSPACE}, SHA)
    text = containerfile(cfg, base_image="localhost/base:1")
    lines = text.splitlines()
    assert lines[1] == "FROM localhost/base:1"
    assert sum(ln.startswith("RUN ") for ln in lines) == 1
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in lines and f"EXPOSE {IMAGE_PORT}" in lines
    assert lines[-1].startswith('ENTRYPOINT ["/usr/bin/tini", "--"')
    assert "--mount=type=secret" not in text  # buildah mounts them as volumes instead
    assert "--mount=type=secret,id=comfypack-index" in containerfile(
        cfg, base_image="b", secrets=True
    )
    script = build_script(cfg)
    assert (
        "uv pip install" in script and "UV_COMPILE_BYTECODE=1" in script
    )  # read-only root: compiled
    assert f"chown -R {IMAGE_UID}:{IMAGE_UID}" in script
    assert f"ln -s {cfg.models_dir} {IMAGE_WORKSPACE}/comfyui/models" in script
    assert f"'mkdir -p {cfg.models_dir}' 'exec \"$@\"'" in script  # the start script makes it


def test_index_settings_come_from_the_host_and_stay_out_of_the_image(tmp_path):
    root = tmp_path / "pypi"
    (root / "simple").mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    # pip's configuration only: uv gets it as UV_* (it does not read pip.conf)
    s = host_index_settings(
        env={},
        pip_config={
            "extra-index-url": f"{(root / 'simple').as_uri()} https://mirror.example/simple",
            "find-links": str(wheels),
            "cert": str(ca),
        },
    )
    assert (
        s.env["UV_EXTRA_INDEX_URL"] == f"{(root / 'simple').as_uri()} https://mirror.example/simple"
    )
    assert s.env["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    assert s.env["UV_FIND_LINKS"] == str(wheels) and "UV_INDEX_URL" not in s.env  # default: PyPI
    assert s.folders == [str(root), str(wheels)]  # a local index's root: its pages link beside
    assert s.ca_file == str(ca)
    # variables win over pip's configuration
    s = host_index_settings(
        env={"PIP_INDEX_URL": "https://idx.example/simple", "HTTPS_PROXY": "http://p:1"},
        pip_config={"index-url": "https://other.example/simple"},
    )
    assert s.env["UV_INDEX_URL"] == s.env["PIP_INDEX_URL"] == "https://idx.example/simple"
    assert s.env["HTTPS_PROXY"] == "http://p:1" and s.folders == [] and s.ca_file is None
    # nothing of it in what the image keeps
    cfg = image_config({}, SHA)
    text = containerfile(cfg, base_image="b") + build_script(cfg)
    assert "idx.example" not in text and str(root) not in text and "UV_INDEX_URL" not in text


def test_manifests_are_the_image_contract(pack):
    plan = plan_build(pack)
    cfg = image_config(plan.envs, plan.pack_sha256)
    dep = kubernetes_manifests(plan)["deployment.yaml"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == set(cfg.volumes)
    assert c["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == cfg.uid
    assert [p["containerPort"] for p in c["ports"]] == [cfg.port]
    assert all(cfg.env[e["name"]] == e["value"] for e in c["env"])
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(cfg.port)
    writable = kubernetes_manifests(plan, KubernetesOptions(read_only_root=False))[
        "deployment.yaml"
    ]
    (c,) = writable["spec"]["template"]["spec"]["containers"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {MODEL_CACHE_PATH, "/tmp"}


def test_the_hpa_follows_the_queue_depth_not_cpu(pack):
    hpa = kubernetes_manifests(
        plan_build(pack), KubernetesOptions(hpa_min=1, hpa_max=5, hpa_queue="3")
    )["hpa.yaml"]
    _validate(hpa)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == QUEUE_METRIC
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "3"}
    hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = {"three": 3}
    kv = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]'")
    with pytest.raises(kv.ValidationError):
        kv.validate(hpa, kv.latest_version(), strict=True)


def _keda_validate(doc: dict) -> None:
    """Against KEDA's CRD (the generated models of cloudcoil-models-keda): types checked by the
    model, unknown fields by a round trip (the models drop what they do not know)."""
    models = pytest.importorskip(
        "cloudcoil.models.keda.v1alpha1",
        reason="cloudcoil-models-keda (the dev extra) ships KEDA's CRD models",
    )
    obj = models.ScaledObject.model_validate(doc)
    assert obj.model_dump(by_alias=True, exclude_none=True, mode="json") == doc


def test_keda_scaled_object_validates_and_can_scale_to_zero(pack):
    manifests = kubernetes_manifests(
        plan_build(pack),
        KubernetesOptions(
            hpa_min=0,
            hpa_max=4,
            keda=True,
            prometheus_url="http://prometheus.monitoring:9090",
            namespace="ml",
        ),
    )
    assert "hpa.yaml" not in manifests  # KEDA makes its own HPA
    so = manifests["keda.yaml"]
    _keda_validate(so)
    spec = so["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 4)
    assert spec["scaleTargetRef"]["name"] == manifests["deployment.yaml"]["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and QUEUE_METRIC in trigger["metadata"]["query"]
    assert 'namespace="ml"' in trigger["metadata"]["query"]
    broken = {**so, "spec": {**spec, "maxReplicaCount": "four"}}
    with pytest.raises(Exception, match="maxReplicaCount"):
        _keda_validate(broken)
    unknown = {**so, "spec": {**spec, "minReplicas": 0}}  # the HPA's word, not KEDA's
    with pytest.raises(AssertionError):
        _keda_validate(unknown)


def test_keda_needs_a_prometheus_and_an_hpa_cannot_go_to_zero(pack):
    plan = plan_build(pack)
    with pytest.raises(WorkflowError, match="--prometheus-url"):
        kubernetes_manifests(plan, KubernetesOptions(hpa_max=2, keda=True))
    with pytest.raises(WorkflowError, match="1 ≤ min"):
        kubernetes_manifests(plan, KubernetesOptions(hpa_min=0, hpa_max=2))


def test_no_builder_is_one_error_that_says_what_to_install(monkeypatch):
    import shutil

    from comfypack.errors import DeployError
    from comfypack.ship.containerize import find_builder

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DeployError, match="install buildah"):
        find_builder()
    with pytest.raises(WorkflowError, match="--builder"):
        find_builder("kaniko")


def test_deploy_cli_writes_the_keda_scaled_object(pack, tmp_path):
    import yaml
    from click.testing import CliRunner

    from comfypack.cli import cli

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
            "--hpa-min",
            "0",
            "--hpa-max",
            "3",
            "--keda",
            "--prometheus-url",
            "http://prometheus:9090",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "deployment.yaml",
        "keda.yaml",
        "pvc.yaml",
        "service.yaml",
    ]
    _keda_validate(yaml.safe_load((out / "keda.yaml").read_text()))
    readme = (out / "README.md").read_text()
    assert "comfypack containerize" in readme and "HTTP add-on" in readme  # scale from zero: said
    result = CliRunner().invoke(
        cli,
        [
            "deploy",
            str(pack),
            "--target",
            "kubernetes",
            "--dry-run",
            "--hpa-min",
            "0",
            "--hpa-max",
            "3",
        ],
    )
    assert result.exit_code == 2 and "1 ≤ min" in result.output  # an HPA cannot go to zero

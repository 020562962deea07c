"""Ship a pack's Bento: to BentoCloud through BentoML's own API, or as Kubernetes manifests.

``comfypack deploy PACK --target bentocloud`` checks the BentoCloud login first (a missing one is
one clear error: run ``bentoml cloud login``), builds the Bento if the store does not hold it
yet (:func:`comfypack.ship.build.build_bento`), pushes it and creates the deployment — or updates it
when one of that name exists — with :func:`bentocloud_config`, the exact dict that
``--dry-run`` prints (no network then).

``comfypack deploy PACK --target kubernetes -o DIR`` writes manifests for the containerized
Bento (:func:`kubernetes_manifests`): a Deployment (GPU request, ``/readyz`` readiness,
``/livez`` liveness, resource requests and limits, non-root, read-only root file system with
``emptyDir`` volumes where it writes), a Service, a PersistentVolumeClaim for the model cache
(``COMFYPACK_HOME``), an optional autoscaler on the service's own queue depth
(``comfypack_queue_depth``): a HorizontalPodAutoscaler on that Pods metric (served by the
Prometheus adapter) or a KEDA ``ScaledObject`` on a Prometheus query, which can scale to zero —
and a README with the commands. What the container runs with — image, user, port, environment and
every writable path — is the image's own contract (:func:`comfypack.ship.containerize.image_config`,
what ``comfypack containerize`` builds), so the manifests and the image cannot disagree.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeployError, WorkflowError
from .bento_context import BuildPlan
from .build import BuildOptions
from .containerize import IMAGE_PORT, IMAGE_UID, MODEL_CACHE_PATH, ImageConfig, image_config

__all__ = [
    "bentocloud_config",
    "deploy_bentocloud",
    "require_cloud_login",
    "KubernetesOptions",
    "kubernetes_manifests",
    "kubernetes_readme",
    "build_command_for",
    "write_kubernetes",
    "dumps_config",
    "MODEL_CACHE_PATH",
    "LOGIN_HINT",
    "QUEUE_METRIC",
]

logger = logging.getLogger(__name__)

LOGIN_HINT = (
    "not logged in to BentoCloud: run `bentoml cloud login` (or set BENTO_CLOUD_API_KEY), "
    "then deploy again"
)
#: the service's gauge of requests waiting for a worker (what the autoscalers follow)
QUEUE_METRIC = "comfypack_queue_depth"
_PORT = IMAGE_PORT
_UID = IMAGE_UID
#: pod volumes by the image path they are mounted on (the rest of the root file system is read-only)
_VOLUME_NAMES = {MODEL_CACHE_PATH: "model-cache", "/tmp": "tmp"}
_DNS_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _dns_name(name: str) -> str:
    """``name`` as a DNS label (what BentoCloud deployments and Kubernetes objects are named)."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not _DNS_RE.match(out):
        raise WorkflowError(
            f"cannot make a deployment name from {name!r}; pass --name "
            "(lowercase letters, digits and '-')"
        )
    return out


# ----------------------------------------------------------------------------------------------
# BentoCloud


def bentocloud_config(
    plan: BuildPlan,
    *,
    name: str | None = None,
    cluster: str | None = None,
    instance_type: str | None = None,
    scaling_min: int = 1,
    scaling_max: int = 1,
    access_authorization: bool = True,
    envs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The deployment config BentoML's ``bentoml.deployment.create(config_dict=…)`` sends."""
    if scaling_min < 0 or scaling_max < 1 or scaling_min > scaling_max:
        raise WorkflowError(
            f"--scaling-min {scaling_min} / --scaling-max {scaling_max}: need "
            "0 ≤ min ≤ max and max ≥ 1"
        )
    config: dict[str, Any] = {"name": _dns_name(name or plan.name), "bento": plan.tag}
    if cluster:
        config["cluster"] = cluster
    config["access_authorization"] = access_authorization
    config["envs"] = [{"name": k, "value": v} for k, v in {**plan.envs, **(envs or {})}.items()]
    service: dict[str, Any] = {
        "scaling": {"min_replicas": scaling_min, "max_replicas": scaling_max}
    }
    if instance_type:
        service["instance_type"] = instance_type
    config["services"] = {plan.service_name: service}
    return config


def require_cloud_login(context: str | None = None) -> None:
    """Raise :class:`DeployError` (with what to run) unless BentoCloud credentials are set up."""
    try:
        from bentoml._internal.cloud.config import CloudClientConfig
        from bentoml.exceptions import BentoMLException
    except ImportError as e:  # pragma: no cover - bentoml is a dependency
        raise DeployError(f"bentoml's cloud client is unavailable ({e}); reinstall bentoml") from e
    try:
        ctx = CloudClientConfig.get_config().get_context(context)
    except BentoMLException as e:
        raise DeployError(LOGIN_HINT) from e
    if not getattr(ctx, "api_token", None):
        raise DeployError(LOGIN_HINT)


def _cloud_error(action: str, e: Exception) -> DeployError:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    status = getattr(e, "error_code", None)
    if status is not None and int(status) in (401, 403):
        return DeployError(
            f"{action}: BentoCloud refused the credentials ({message}); run "
            "`bentoml cloud login` again"
        )
    return DeployError(f"{action}: {message}")


def deploy_bentocloud(config: dict[str, Any]) -> tuple[str, Any]:
    """Push ``config["bento"]`` (from the local store) and create the deployment, or update it
    if one of that name exists. Returns ``("created" | "updated", deployment)``."""
    import importlib

    from bentoml.exceptions import BentoMLException, NotFound

    # the modules themselves (``bentoml.bentos`` is a lazy proxy)
    bentos = importlib.import_module("bentoml.bentos")
    deployment = importlib.import_module("bentoml.deployment")
    tag = config["bento"]
    try:
        bentos.push(tag)
    except BentoMLException as e:
        raise _cloud_error(f"pushing {tag} to BentoCloud failed", e) from e
    name = config["name"]
    try:
        try:
            deployment.get(name, cluster=config.get("cluster"))
        except NotFound:
            return "created", deployment.create(config_dict=dict(config))
        return "updated", deployment.update(
            name=name, cluster=config.get("cluster"), config_dict=dict(config)
        )
    except BentoMLException as e:
        raise _cloud_error(f"deploying {name} on BentoCloud failed", e) from e


# ----------------------------------------------------------------------------------------------
# Kubernetes


@dataclass(frozen=True)
class KubernetesOptions:
    image: str | None = None  # default: the Bento's tag (what `bentoml containerize` names it)
    name: str | None = None  # default: the Bento's name as a DNS label
    namespace: str | None = None
    gpu: int = 0
    replicas: int = 1
    hpa_min: int | None = None
    hpa_max: int | None = None  # set: an autoscaler (HPA, or KEDA with `keda`) on the queue depth
    hpa_queue: str = "2"  # target requests waiting per replica (a Kubernetes quantity)
    keda: bool = False  # a KEDA ScaledObject instead of an HPA (hpa_min may then be 0)
    prometheus_url: str | None = None  # KEDA: the Prometheus that scrapes the pods' /metrics
    cpu: str = "2"
    memory: str = "8Gi"
    model_cache_size: str = "50Gi"
    storage_class: str | None = None
    read_only_root: bool = True


def _metadata(name: str, opts: KubernetesOptions, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def kubernetes_manifests(
    plan: BuildPlan, opts: KubernetesOptions | None = None
) -> dict[str, dict[str, Any]]:
    """``{file name: manifest}`` for the containerized Bento of ``plan``."""
    opts = opts or KubernetesOptions()
    if opts.gpu < 0 or opts.replicas < 0:
        raise WorkflowError("--gpu and --replicas must be ≥ 0")
    if opts.hpa_max is not None and not (
        (0 if opts.keda else 1) <= (1 if opts.hpa_min is None else opts.hpa_min) <= opts.hpa_max
    ):
        raise WorkflowError(f"--hpa-min / --hpa-max: need {0 if opts.keda else 1} ≤ min ≤ max")
    if opts.keda and (opts.hpa_max is None or not opts.prometheus_url):
        raise WorkflowError(
            "--keda needs --hpa-max and --prometheus-url (the Prometheus that "
            "scrapes the pods' /metrics)"
        )
    name = _dns_name(opts.name or plan.name)
    image = opts.image or plan.tag
    contract = image_config(plan.envs, plan.pack_sha256)
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "comfypack",
        "app.kubernetes.io/version": plan.version,
    }
    selector = {"app.kubernetes.io/name": name}
    cache_claim = f"{name}-model-cache"
    many = (opts.hpa_max or opts.replicas) > 1
    access = "ReadWriteMany" if many else "ReadWriteOnce"

    quantities: dict[str, Any] = {"cpu": opts.cpu, "memory": opts.memory}
    if opts.gpu:
        quantities["nvidia.com/gpu"] = opts.gpu  # extended resource: requests must equal limits
    # the image sets these too; spelled out so the pod says where it writes
    env = [
        {"name": k, "value": contract.env[k]} for k in ("COMFYPACK_HOME", "BENTOML_HOME", "HOME")
    ]
    mounts, volumes = _volumes(contract, cache_claim, opts.read_only_root)
    probe = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }
    container: dict[str, Any] = {
        "name": "comfypack",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": contract.port, "protocol": "TCP"}],
        "env": env,
        # the first start fetches the models: allow it (up to 30 min) before liveness applies
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 180,
        },
        "readinessProbe": probe,
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": contract.uid,
            "runAsGroup": contract.uid,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": opts.read_only_root,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": contract.uid,
            "runAsGroup": contract.uid,
            "fsGroup": contract.uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if opts.gpu:
        pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, opts, labels),
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": selector},
            # one volume that only one node may mount: the old pod goes before the new one comes
            "strategy": {"type": "RollingUpdate" if many else "Recreate"},
            # Prometheus scrapes /metrics (the queue depth the autoscaler follows)
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(contract.port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod,
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, opts, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": _PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    pvc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(cache_claim, opts, labels),
        "spec": {
            "accessModes": [access],
            "resources": {"requests": {"storage": opts.model_cache_size}},
        },
    }
    if opts.storage_class:
        pvc["spec"]["storageClassName"] = opts.storage_class
    manifests = {"deployment.yaml": deployment, "service.yaml": service, "pvc.yaml": pvc}
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    if opts.hpa_max is not None and opts.keda:
        ns = f'namespace="{opts.namespace}",' if opts.namespace else ""
        manifests["keda.yaml"] = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _metadata(name, opts, labels),
            "spec": {
                "scaleTargetRef": target,
                "minReplicaCount": 1 if opts.hpa_min is None else opts.hpa_min,
                "maxReplicaCount": opts.hpa_max,
                "pollingInterval": 15,
                "cooldownPeriod": 300,
                "triggers": [
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": opts.prometheus_url,
                            # requests waiting in every replica, plus those running (busy workers)
                            "query": f'sum({QUEUE_METRIC}{{{ns}pod=~"{name}-.*"}}) + '
                            f'sum(comfypack_busy_workers{{{ns}pod=~"{name}-.*"}})',
                            "threshold": opts.hpa_queue,
                            "activationThreshold": "0",
                        },
                    }
                ],
            },
        }
    elif opts.hpa_max is not None:
        manifests["hpa.yaml"] = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(name, opts, labels),
            "spec": {
                "scaleTargetRef": target,
                "minReplicas": opts.hpa_min or 1,
                "maxReplicas": opts.hpa_max,
                # a Pods metric from the Prometheus adapter (custom.metrics.k8s.io): the service's
                # own queue, not CPU (a GPU-bound worker keeps CPU low while requests wait)
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": QUEUE_METRIC},
                            "target": {"type": "AverageValue", "averageValue": opts.hpa_queue},
                        },
                    }
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
        }
    return manifests


def _volumes(
    contract: ImageConfig, cache_claim: str, read_only_root: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A pod volume for each of the image's volumes: the model cache from its claim, the rest
    ``emptyDir`` (with a writable root, only the model cache and ``/tmp``)."""
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    for path in contract.volumes:
        vol = _VOLUME_NAMES.get(path) or "workspace-" + path.rstrip("/").rsplit("/", 1)[-1]
        if not read_only_root and vol.startswith("workspace-"):
            continue
        mounts.append({"name": vol, "mountPath": path})
        volumes.append(
            {"name": vol, "persistentVolumeClaim": {"claimName": cache_claim}}
            if path == MODEL_CACHE_PATH
            else {"name": vol, "emptyDir": {}}
        )
    return mounts, volumes


def build_command_for(pack: Path, options: BuildOptions, plan: BuildPlan) -> str:
    """The ``comfypack build`` line that makes ``plan``'s Bento (same tag: same flags)."""
    import shlex
    from dataclasses import replace

    args = replace(options, name=plan.name).to_args()
    return shlex.join(["comfypack", "build", str(pack), *args])


def kubernetes_readme(
    plan: BuildPlan, opts: KubernetesOptions, build_command: str, out_dir: str = "DIR"
) -> str:
    """The README that goes next to the manifests: containerize, push, apply."""
    name = _dns_name(opts.name or plan.name)
    image = opts.image or plan.tag
    ns = f" -n {opts.namespace}" if opts.namespace else ""
    push = "" if opts.image is None else f"docker tag {plan.tag} {image}\ndocker push {image}\n"
    if not push:
        push = (
            "# push it where the cluster pulls from, and set that name in deployment.yaml, e.g.\n"
            f"#   docker tag {plan.tag} registry.example.com/{plan.tag}\n"
            f"#   docker push registry.example.com/{plan.tag}\n"
            "# (or write these files again with --image registry.example.com/…)\n"
        )
    gpu = (
        f"It asks for {opts.gpu} `nvidia.com/gpu` (the NVIDIA device plugin must run on the "
        "GPU nodes) and tolerates their `nvidia.com/gpu` taint.\n\n"
        if opts.gpu
        else ""
    )
    shared = (
        "Several replicas share the model cache: its claim asks for `ReadWriteMany`, which "
        "needs a storage class that offers it (NFS, EFS, Filestore, …).\n\n"
    )
    hpa = ""
    if opts.hpa_max is not None and opts.keda:
        low = 1 if opts.hpa_min is None else opts.hpa_min
        hpa = (
            f"`keda.yaml` is a KEDA ScaledObject: between {low} and {opts.hpa_max} replicas "
            f"on `sum({QUEUE_METRIC}) + sum(comfypack_busy_workers)` from the Prometheus at "
            f"`{opts.prometheus_url}` (which must scrape the pods' `/metrics`, as their "
            f"`prometheus.io/*` annotations ask), {opts.hpa_queue} per replica. KEDA must be "
            "installed (it makes the HPA itself: do not add another). "
            + (
                "With 0 replicas nothing serves and nothing is queued, so nothing wakes it: "
                "put KEDA's HTTP add-on (or an ingress metric) in front to scale from zero. "
                if low == 0
                else ""
            )
            + shared
        )
    elif opts.hpa_max is not None:
        hpa = (
            f"`hpa.yaml` scales it between {opts.hpa_min or 1} and {opts.hpa_max} replicas on "
            f"the service's own queue (`{QUEUE_METRIC}`, {opts.hpa_queue} waiting requests per "
            "replica on average), not on CPU: a replica busy on the GPU keeps its CPU low while "
            "requests wait. It is a Pods metric of the custom metrics API, so Prometheus must "
            "scrape the pods' `/metrics` (their `prometheus.io/*` annotations ask for it) and "
            "the Prometheus adapter must serve it, with a rule like:\n\n"
            "```yaml\nrules:\n- seriesQuery: '" + QUEUE_METRIC + '{namespace!="",pod!=""}\'\n'
            "  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n"
            "  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)\n```\n\n"
            + shared
        )
    # the same flags make the same Bento; `comfypack containerize` builds it, then its image
    containerize_command = (
        build_command.replace("comfypack build ", "comfypack containerize ", 1)
        + f" -t {plan.tag}   # an OCI image (buildah or docker) named {plan.tag}"
    )
    return f"""# {name} on Kubernetes

Manifests written by `comfypack deploy {plan.pack.name} --target kubernetes` for the Bento
`{plan.tag}` (pack sha256 `{plan.pack_sha256[:16]}…`).

| file | what |
|---|---|
| `deployment.yaml` | the service: port {_PORT}, readiness `/readyz` (200 once ComfyUI answers), liveness `/livez`, a start-up probe that allows the first model download, CPU/memory{"/GPU" if opts.gpu else ""} requests and limits, non-root (uid {_UID}), no privilege escalation, read-only root file system{" (emptyDir volumes for /tmp and the workspace folders it writes)" if opts.read_only_root else " off"} |
| `service.yaml` | a ClusterIP Service on port {_PORT} |
| `pvc.yaml` | `{name}-model-cache` ({opts.model_cache_size}): the model cache, mounted at `{MODEL_CACHE_PATH}` (`COMFYPACK_HOME`) |
{"| `keda.yaml` | a KEDA ScaledObject on the queue depth |" + chr(10) if opts.hpa_max is not None and opts.keda else ""}{"| `hpa.yaml` | a HorizontalPodAutoscaler (autoscaling/v2) on the queue depth |" + chr(10) if opts.hpa_max is not None and not opts.keda else ""}
The image restores the pack's ComfyUI and custom nodes when it is built. Models are not in it:
the first start fetches each one from its source into the model cache and checks its sha256, so
later starts (and other replicas on the same volume) find them there.

{gpu}{hpa}## Build, push, apply

```bash
{containerize_command}
# (these manifests describe that image: user, port, volumes, start script; an image from
#  `bentoml containerize {plan.tag}` writes elsewhere and needs --writable-root)
{push}kubectl apply{ns} -f {out_dir}
kubectl rollout status{ns} deployment/{name}
kubectl port-forward{ns} service/{name} {_PORT}:{_PORT}   # then http://127.0.0.1:{_PORT}/docs
```

A model that needs a login (a gated Hugging Face repo) needs `HF_TOKEN` in
the Deployment's environment, from a Secret.
"""


def write_kubernetes(
    out_dir: Path, manifests: dict[str, dict[str, Any]], readme: str
) -> list[Path]:
    """Write the manifests (YAML) and README.md into ``out_dir``; returns the files written."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file, doc in manifests.items():
        path = out_dir / file
        path.write_text(
            "# written by `comfypack deploy --target kubernetes`\n"
            + yaml.safe_dump(doc, sort_keys=False),
            encoding="utf-8",
        )
        written.append(path)
    path = out_dir / "README.md"
    path.write_text(readme, encoding="utf-8")
    written.append(path)
    return written


def dumps_config(config: dict[str, Any], fmt: str = "yaml") -> str:
    """The config as BentoML's ``-f`` deployment files spell it (YAML), or JSON."""
    if fmt == "json":
        return json.dumps(config, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(config, sort_keys=False))

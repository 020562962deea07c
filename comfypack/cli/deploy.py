"""``comfypack deploy``: ship a pack to BentoCloud, or as Kubernetes manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._bento import _bento_options, _build_with_status, _options, _pack_arg
from ._common import _console, _errors
from ._group import cli

__all__ = ["deploy_cmd"]


@cli.command("deploy")
@click.argument("pack", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--target", type=click.Choice(["bentocloud", "kubernetes"]), required=True)
@click.option(
    "--dry-run",
    is_flag=True,
    help="bentocloud: print the deployment config and stop "
    "(no build, no network); kubernetes: print the manifests instead of writing them.",
)
@click.option("--name", default=None, help="Deployment name (default: the Bento's name).")
@click.option("--bento-name", default=None, help="Bento name (default: from the pack's file name).")
@_bento_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="How --dry-run prints.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="bentocloud: print the result as JSON (with --dry-run: the deployment config as JSON).",
)
@click.option("--cluster", default=None, help="bentocloud: the cluster to deploy to.")
@click.option("--instance-type", default=None, help="bentocloud: instance type (e.g. gpu.l4.1).")
@click.option(
    "--scaling-min",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="bentocloud: fewest replicas.",
)
@click.option(
    "--scaling-max",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="bentocloud: most replicas.",
)
@click.option(
    "--access-authorization/--public",
    default=True,
    show_default=True,
    help="bentocloud: require a BentoCloud API token to call the endpoint.",
)
@click.option(
    "--env",
    "envs",
    multiple=True,
    metavar="KEY=VALUE",
    help="bentocloud: an extra environment variable (e.g. COMFYPACK_API_KEY=…). Repeatable.",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="kubernetes: the folder to write the manifests into.",
)
@click.option(
    "--image",
    default=None,
    help="kubernetes: the image the cluster pulls (default: "
    "the Bento's tag, as `bentoml containerize` names it).",
)
@click.option("--namespace", default=None, help="kubernetes: the namespace of every object.")
@click.option(
    "--replicas",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="kubernetes: replicas (without an HPA).",
)
@click.option(
    "--hpa-min",
    type=click.IntRange(min=0),
    default=None,
    help="kubernetes: fewest replicas of the autoscaler (0 only with --keda).",
)
@click.option(
    "--hpa-max",
    type=click.IntRange(min=1),
    default=None,
    help="kubernetes: autoscale on the queue depth up to this many replicas (an HPA "
    "on comfypack_queue_depth through the Prometheus adapter; --keda: KEDA).",
)
@click.option(
    "--hpa-queue",
    default="2",
    show_default=True,
    help="kubernetes: requests waiting per replica the autoscaler aims for.",
)
@click.option(
    "--keda",
    is_flag=True,
    help="kubernetes: a KEDA ScaledObject instead of the HPA "
    "(--hpa-min 0 scales to zero); needs --prometheus-url.",
)
@click.option(
    "--prometheus-url",
    default=None,
    help="kubernetes --keda: the Prometheus that scrapes the pods' /metrics.",
)
@click.option("--cpu", default="2", show_default=True, help="kubernetes: CPU request and limit.")
@click.option(
    "--memory", default="8Gi", show_default=True, help="kubernetes: memory request and limit."
)
@click.option(
    "--model-cache-size",
    default="50Gi",
    show_default=True,
    help="kubernetes: size of the model cache volume (PVC).",
)
@click.option("--storage-class", default=None, help="kubernetes: storage class of the model cache.")
@click.option(
    "--writable-root",
    is_flag=True,
    help="kubernetes: do not make the container's root file system read-only.",
)
@_errors
def deploy_cmd(
    pack: Path,
    target: str,
    dry_run: bool,
    name: str | None,
    bento_name: str | None,
    bento_version: str | None,
    gpu: int,
    timeout: float,
    concurrency: int | None,
    workers: int | None,
    endpoint: str,
    include_models: bool,
    fmt: str,
    cluster: str | None,
    instance_type: str | None,
    scaling_min: int,
    scaling_max: int,
    access_authorization: bool,
    envs: tuple[str, ...],
    out_dir: Path | None,
    image: str | None,
    namespace: str | None,
    replicas: int,
    hpa_min: int | None,
    hpa_max: int | None,
    cpu: str,
    memory: str,
    model_cache_size: str,
    storage_class: str | None,
    writable_root: bool,
    as_json: bool = False,
    hpa_queue: str = "2",
    keda: bool = False,
    prometheus_url: str | None = None,
) -> None:
    """Ship PACK: to BentoCloud (build if needed, push, create or update the deployment) or as
    Kubernetes manifests for the containerized Bento (-o DIR)."""
    from ..ship.build import plan_build

    pack = _pack_arg(pack)
    options = _options(
        bento_name, bento_version, gpu, timeout, concurrency, workers, endpoint, include_models
    )
    if hpa_min is not None and hpa_max is None:
        raise click.UsageError("--hpa-min needs --hpa-max")
    if target == "kubernetes":
        _deploy_kubernetes(
            pack,
            options,
            dry_run=dry_run,
            out_dir=out_dir,
            name=name,
            image=image,
            namespace=namespace,
            gpu=gpu,
            replicas=replicas,
            hpa_min=hpa_min,
            hpa_max=hpa_max,
            hpa_queue=hpa_queue,
            keda=keda,
            prometheus_url=prometheus_url,
            cpu=cpu,
            memory=memory,
            model_cache_size=model_cache_size,
            storage_class=storage_class,
            read_only_root=not writable_root,
        )
        return
    from ..ship.deploy import (
        bentocloud_config,
        deploy_bentocloud,
        dumps_config,
        require_cloud_login,
    )

    extra: dict[str, str] = {}
    for pair in envs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--env")
        extra[key.strip()] = value
    config = bentocloud_config(
        plan_build(pack, options),
        name=name,
        cluster=cluster,
        instance_type=instance_type,
        scaling_min=scaling_min,
        scaling_max=scaling_max,
        access_authorization=access_authorization,
        envs=extra,
    )
    if dry_run:
        click.echo(dumps_config(config, "json" if as_json else fmt), nl=False)
        return
    require_cloud_login()
    result = _build_with_status(pack, options, reuse=True)
    con = _console(stderr=True)
    con.print(f"{'built' if result.built else 'using'} {result.tag}")
    with con.status(f"pushing {result.tag} and deploying {config['name']} …"):
        action, deployment = deploy_bentocloud(config)
    url = getattr(deployment, "admin_console", None) or ""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "action": action,
                    "deployment": config["name"],
                    "tag": result.tag,
                    "built": result.built,
                    "url": url or None,
                },
                indent=2,
            )
        )
        return
    _console().print(f"{action} deployment {config['name']} ({result.tag}) {url}".rstrip())


def _deploy_kubernetes(
    pack: Path, options: Any, *, dry_run: bool, out_dir: Path | None, **kw: Any
) -> None:
    import shlex

    from ..ship.build import plan_build
    from ..ship.deploy import (
        KubernetesOptions,
        build_command_for,
        kubernetes_manifests,
        kubernetes_readme,
        write_kubernetes,
    )

    if out_dir is None and not dry_run:
        raise click.UsageError("--target kubernetes needs -o DIR (or --dry-run)")
    plan = plan_build(pack, options)
    kopts = KubernetesOptions(**kw)
    manifests = kubernetes_manifests(plan, kopts)
    if dry_run:
        import yaml

        click.echo(yaml.safe_dump_all(list(manifests.values()), sort_keys=False), nl=False)
        return
    assert out_dir is not None
    build_command = build_command_for(pack, options, plan)
    written = write_kubernetes(
        out_dir, manifests, kubernetes_readme(plan, kopts, build_command, shlex.quote(str(out_dir)))
    )
    con = _console()
    for path in written:
        con.print(f"wrote {path}")
    con.print(
        f"next: {build_command.replace('comfypack build ', 'comfypack containerize ', 1)} "
        f"-t {plan.tag} — see {out_dir / 'README.md'}"
    )

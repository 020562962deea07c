"""Ship a pack: a Bento, an OCI image, Kubernetes manifests, a BentoCloud deployment, a client.

- ``build``: ``comfypack build`` — :class:`BuildOptions`, :func:`plan_build` (decided before
  anything is written, deterministic version), :func:`build_bento` (``bentoml build``).
- ``bento_context``: the :class:`BuildPlan` and the build context written from it (the Bento's
  ``service.py``, comfypack's source, the node package, the pack, settings, image set-up).
- ``containerize``: the Bento as an OCI image (buildah, or docker): one layer, non-root,
  read-only root, model cache volume.
- ``deploy``: BentoCloud (config, push, deployment) and Kubernetes manifests (Deployment,
  Service, HPA on the queue depth, KEDA).
- ``codegen``: the typed Python client of one workflow, from ``templates/client.py.tmpl``.

What runs *inside* a Bento is :mod:`comfypack.serve.bento_runtime` (serving, one stage down).
The face is lazy: importing one of these modules does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .bento_context import IMAGE_WORKSPACE, BuildPlan, write_build_context
    from .build import BuildOptions, BuildResult, bento_exists, build_bento, plan_build
    from .codegen import generate_client
    from .containerize import ContainerizeOptions, ContainerizeResult, find_builder, image_config
    from .deploy import (
        KubernetesOptions,
        bentocloud_config,
        deploy_bentocloud,
        kubernetes_manifests,
        write_kubernetes,
    )

_EXPORTS = {
    "BuildOptions": ".build",
    "BuildResult": ".build",
    "bento_exists": ".build",
    "build_bento": ".build",
    "plan_build": ".build",
    "BuildPlan": ".bento_context",
    "IMAGE_WORKSPACE": ".bento_context",
    "write_build_context": ".bento_context",
    "ContainerizeOptions": ".containerize",
    "ContainerizeResult": ".containerize",
    "find_builder": ".containerize",
    "image_config": ".containerize",
    "KubernetesOptions": ".deploy",
    "bentocloud_config": ".deploy",
    "deploy_bentocloud": ".deploy",
    "kubernetes_manifests": ".deploy",
    "write_kubernetes": ".deploy",
    "generate_client": ".codegen",
}

__all__ = [
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "ContainerizeOptions",
    "ContainerizeResult",
    "IMAGE_WORKSPACE",
    "KubernetesOptions",
    "bento_exists",
    "bentocloud_config",
    "build_bento",
    "deploy_bentocloud",
    "find_builder",
    "generate_client",
    "image_config",
    "kubernetes_manifests",
    "plan_build",
    "write_build_context",
    "write_kubernetes",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)

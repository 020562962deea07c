"""Pin the public surface: ``comfypack.__all__`` and each module's ``__all__``.

A refactor that adds, removes or renames a public name must change this file on purpose.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import comfypack

PACKAGE = Path(comfypack.__file__).resolve().parent

EXPECTED: dict[str, set[str]] = {
    "comfypack": {
        "__version__",
        "ComfyPackError",
        "ComfyUIError",
        "ComfyUIUnavailable",
        "ExecutionFailed",
        "PromptRejected",
        "RequestError",
        "WorkflowError",
        "InputSpec",
        "Interface",
        "OutputSpec",
        "load_workflow",
        "parse_interface",
        "input_schema",
        "output_schema",
        "pydantic_model",
        "validate_request",
    },
    "comfypack.errors": {
        "ComfyPackError",
        "WorkflowError",
        "RequestError",
        "InputFetchError",
        "ComfyUIError",
        "ComfyUIUnavailable",
        "PromptRejected",
        "ExecutionFailed",
        "ProvisionError",
        "ServiceError",
        "FieldError",
        "LockError",
        "RestoreError",
        "InvalidPack",
        "ComfyUITimeout",
        "DeployError",
        "ModelsMissing",
        "Overloaded",
        "Cancelled",
    },
    "comfypack.files.hashing": {
        "sha256_file",
        "HashCache",
        "default_hash_cache",
        "hash_files",
        "shared_progress",
        "progress_bar",
    },
    "comfypack.atomic": {"atomic_file", "atomic_write", "place_new"},
    "comfypack.lock.gitstate": {
        "GitState",
        "git_state",
        "local_patch",
        "apply_patch",
        "clean_url",
        "INSTALL_MARKER",
    },
    "comfypack.lock.trees": {"safe_relpath", "tree_files", "tree_sha256", "SKIP_NAMES"},
    "comfypack.files.download": {
        "source_url",
        "download",
        "hf_file_url",
        "HF_CANONICAL",
        "s3_presigned_url",
    },
    "comfypack.pack.modelcache": {"model_cache_dir", "fetch_models", "link_model", "Conflicts"},
    "comfypack.pack.venv": {
        "ensure_venv",
        "find_uv",
        "venv_python",
        "installed_packages",
        "check_platform",
        "index_args",
        "requirements_text",
        "INSTALLERS",
        "SEED_PACKAGES",
    },
    "comfypack.pack.verify": {"verify"},
    "comfypack.serve.v2": {
        "AssetRecord",
        "AssetStore",
        "Engine",
        "JobManager",
        "V2ConfigError",
        "V2Error",
        "V2Settings",
        "check_any",
        "check_served",
        "create_app",
        "settings_for",
    },
    "comfypack.serve.v2.app": {"create_app"},
    "comfypack.serve.v2.assets": {"AssetRecord", "AssetStore", "check_hash", "safe_name"},
    "comfypack.serve.v2.common": {
        "V2Error",
        "error_body",
        "check_uuid",
        "now",
        "iso",
        "origin",
        "MAX_TEXT",
    },
    "comfypack.serve.v2.jobs": {"Engine", "Job", "JobManager", "Submission", "TERMINAL"},
    "comfypack.serve.v2.openapi": {"V2_SCHEMAS", "v2_paths"},
    "comfypack.serve.v2.policy": {
        "AssetRef",
        "check_shape",
        "check_served",
        "check_any",
        "asset_refs",
        "is_asset_ref",
        "MAX_NODES",
    },
    "comfypack.comfyui.nodepack": {
        "LINK_NAME",
        "NodesChange",
        "check_comfyui_dir",
        "install_nodes",
        "uninstall_nodes",
        "pip_install_command",
        "python_node_package",
        "guess_comfyui_python",
    },
    "comfypack.lockfile": {
        "LOCK_VERSION",
        "GitSource",
        "PackagedSource",
        "ArchiveSource",
        "TreeSource",
        "ModelSource",
        "PythonInfo",
        "ComfyUIInfo",
        "CustomNode",
        "Package",
        "Model",
        "WorkflowInfo",
        "Lock",
        "dumps",
        "loads",
        "read_lock",
        "write_lock",
        "lock_schema",
        "requirement",
        "valid_package",
        "is_local_url",
        "FileSource",
        "PatchInfo",
        "RegistryInfo",
        "check_sources",
        "COMFYPACK_NODES",
    },
    "comfypack.lock.sources": {
        "ModelFile",
        "Resolver",
        "SourcesFile",
        "HFCacheResolver",
        "HFApiResolver",
        "CivitaiResolver",
        "default_resolvers",
        "resolve_sources",
        "default_sources_cache",
        "WorkflowModels",
        "workflow_model_urls",
        "classify_url",
    },
    "comfypack.lock.create": {
        "find_models",
        "missing_models",
        "MODEL_SUFFIXES",
        "custom_nodes",
        "list_packages",
        "python_info",
        "comfyui_info",
        "tree_sha256",
        "workflow_sha256",
        "create_lock",
        "missing_sources",
        "COMFYPACK_NODES",
        "DEV_TOOLS",
        "index_urls",
    },
    "comfypack.pack.archive": {
        "create_pack",
        "find_assets",
        "WORKFLOW_ENTRY",
        "UI_WORKFLOW_ENTRY",
        "LOCK_ENTRY",
        "INTERFACE_ENTRY",
        "ZIP_DATE",
        "PackLimits",
        "PackContents",
        "read_pack",
        "entry_info",
    },
    "comfypack.pack.restore": {
        "Workspace",
        "unpack",
        "run_node_install_scripts",
        "default_workspace",
        "copy_inputs",
        "WORKSPACE_MARKER",
    },
    "comfypack.workflow.interface": {
        "INPUT_NODES",
        "OUTPUT_NODES",
        "FILE_KINDS",
        "InputSpec",
        "OutputSpec",
        "Interface",
        "load_workflow",
        "parse_interface",
        "RESERVED_NAMES",
        "workflow_name",
    },
    "comfypack.workflow.schema": {
        "input_schema",
        "output_schema",
        "interface_document",
        "pydantic_model",
        "validate_request",
        "MEDIA_TYPES",
    },
    "comfypack.workflow.media": {
        "MediaFile",
        "Upload",
        "InputLimits",
        "decode_media",
        "fetch_url",
        "sniff",
        "DEFAULT_MAX_BYTES",
        "default_pixel_limits",
    },
    "comfypack.files.urlfetch": {
        "UrlPolicy",
        "address_problem",
        "fetch_url",
        "check_url",
        "pinned_connector",
        "Resolve",
        "DEFAULT_URL_TIMEOUT",
    },
    "comfypack.serve.webhooks": {
        "CALLBACK_HEADER",
        "ID_HEADER",
        "TIMESTAMP_HEADER",
        "SIGNATURE_HEADER",
        "WebhookSettings",
        "Delivery",
        "event",
        "sign",
        "signed_headers",
        "verify_signature",
        "check_callback",
        "deliver",
    },
    "comfypack.serve.delivery": {"DeliveryOptions", "ResultDelivery", "DeliveryOptionsMiddleware"},
    "comfypack.serve.storage": {
        "StorageSettings",
        "OutputStore",
        "OUTPUTS_HEADER",
        "PREFIX_HEADER",
        "MODES",
        "choose_mode",
        "job_prefix",
    },
    "comfypack.files.s3": {"s3_client"},
    "comfypack.comfyui.runner": {"WorkflowRunner", "RunOutput", "OutputFile", "PreparedRequest"},
    "comfypack.config": {
        "model_endpoints",
        "allow_local_sources",
        "nodes_dir_override",
        "extra_nodes_dirs",
        "ENVIRONMENT",
        "comfypack_home",
        "default_comfyui_dir",
        "record_default_comfyui",
        "service_state_dir",
    },
    "comfypack.workflow.uiformat": {
        "is_ui_format",
        "convert",
        "missing_node_types",
        "dynamic_prompt",
    },
    "comfypack.comfyui.loader": {"load_any_workflow"},
    "comfypack.comfyui.objectinfo": {
        "object_info_for",
        "fetch_object_info",
        "object_info_cache_key",
        "frontend_version_for",
    },
    "comfypack.cli": {"main", "cli"},
    "comfypack.comfyui": {
        "ArchiveSource",
        "ComfyUIClient",
        "ComfyUIProcess",
        "ComfyUISource",
        "DEFAULT_PACKAGED",
        "FileRef",
        "GitSource",
        "OutputFile",
        "PackagedSource",
        "PreparedRequest",
        "ProgressEvent",
        "RunOutput",
        "RunResult",
        "TORCH_PINS",
        "WorkerPool",
        "WorkflowRunner",
        "comfyui_version",
        "free_port",
        "from_lock",
        "frontend_version_for",
        "install",
        "install_nodes",
        "install_requirements",
        "load_any_workflow",
        "node_package_dir",
        "object_info_for",
        "read_marker",
        "to_lock",
        "uninstall_nodes",
    },
    "comfypack.comfyui.client": {"ComfyUIClient", "RunResult", "FileRef", "ProgressEvent"},
    "comfypack.comfyui.process": {
        "ComfyUIProcess",
        "free_port",
        "node_package_dir",
        "node_package_copies",
        "has_gpu",
        "gpu_count",
        "gpu_ids",
    },
    "comfypack.comfyui.pool": {"Admission", "Worker", "WorkerPool", "default_worker_count"},
    "comfypack.serve.http": {
        "AuthMiddleware",
        "DocsMiddleware",
        "ErrorShapeMiddleware",
        "JobsMiddleware",
        "OpenAPIMiddleware",
        "ReadyMiddleware",
        "request_id",
        "send_error",
    },
    "comfypack.serve.openapi": {"TASK_STATUSES", "openapi_document"},
    "comfypack.ship.codegen": {"generate_client"},
    "comfypack.ship.build": {
        "BuildOptions",
        "BUILD_FLAGS",
        "BuildPlan",
        "BuildResult",
        "plan_build",
        "write_build_context",
        "build_bento",
        "bento_exists",
        "IMAGE_WORKSPACE",
    },
    "comfypack.serve.engine": {"ServeConfig", "WorkflowEngine", "load_served", "warmup_body"},
    "comfypack.serve.jobs": {"JobTable", "FINAL_STATUSES", "progress_hook"},
    "comfypack.serve.bento_runtime": {"SETTINGS_FILE", "WEIGHTS_DIR", "apply_bento_settings"},
    "comfypack.serve.workspace": {
        "restore_workspace",
        "prepare_workspace",
        "seed_inputs",
        "WEIGHTS_DIR",
    },
    "comfypack.ship.deploy": {
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
    },
    "comfypack.ship.containerize": {
        "ContainerizeOptions",
        "ContainerizeResult",
        "ImageConfig",
        "image_config",
        "containerfile",
        "build_script",
        "host_index_settings",
        "IndexSettings",
        "find_builder",
        "containerize",
        "DEFAULT_BASE_IMAGE",
        "MODEL_CACHE_PATH",
        "IMAGE_UID",
        "IMAGE_PORT",
        "BENTO_PATH",
        "VENV_PATH",
    },
    "comfypack.comfyui.source": {
        "ComfyUISource",
        "GitSource",
        "PackagedSource",
        "ArchiveSource",
        "from_lock",
        "to_lock",
        "DEFAULT_PACKAGED",
        "TORCH_PINS",
        "install",
        "install_requirements",
        "read_marker",
        "comfyui_version",
    },
    "comfypack._lazy": {"lazy_exports"},
    "comfypack._version": {"__version__"},
    "comfypack.files": {
        "HashCache",
        "UrlPolicy",
        "check_url",
        "default_hash_cache",
        "fetch_url",
        "hash_files",
        "hf_file_url",
        "s3_client",
        "sha256_file",
        "source_url",
    },
    "comfypack.pack": {
        "PackContents",
        "PackLimits",
        "Workspace",
        "create_pack",
        "default_workspace",
        "ensure_venv",
        "fetch_models",
        "model_cache_dir",
        "read_pack",
        "unpack",
    },
    "comfypack.serve": {
        "BODY_FIELD",
        "DeliveryOptions",
        "FINAL_STATUSES",
        "GenerateEndpoint",
        "JobTable",
        "OutputStore",
        "ResultDelivery",
        "SETTINGS_FILE",
        "ServeConfig",
        "StorageSettings",
        "TASK_STATUSES",
        "WEIGHTS_DIR",
        "WebhookSettings",
        "WorkflowEngine",
        "apply_bento_settings",
        "load_served",
        "make_service",
        "openapi_document",
        "prepare_workspace",
        "progress_hook",
        "restore_workspace",
        "sample_media",
        "seed_inputs",
        "verify_signature",
        "warmup_body",
    },
    "comfypack.serve.body": {"BodyLimitMiddleware", "BodyTypeMiddleware", "SubmitCheckMiddleware"},
    "comfypack.serve.multipart": {"MultipartMiddleware", "form_to_body"},
    "comfypack.serve.openapi_media": {"sample_media"},
    "comfypack.serve.openapi_paths": set(),
    "comfypack.serve.v2.checks": set(),
    "comfypack.serve.v2.settings": {"V2ConfigError", "V2Settings", "settings_for"},
}

# Modules that import bentoml at import time: their __all__ is read from the source (fast).
EXPECTED_STATIC: dict[str, set[str]] = {
    "comfypack.cli.__main__": set(),  # runs the CLI when imported
    "comfypack.serve.service": {"ServeConfig", "make_service", "GenerateEndpoint", "BODY_FIELD"},
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_module_all_is_pinned(module):
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPECTED[module]
    assert len(mod.__all__) == len(set(mod.__all__)), f"{module}.__all__ lists a name twice"
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == [], f"{module}.__all__ names what it does not define: {missing}"


def _static_all(module: str) -> list[str]:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{module} has no __all__")


@pytest.mark.parametrize("module", sorted(EXPECTED_STATIC))
def test_module_all_is_pinned_without_importing(module):
    names = _static_all(module)
    assert set(names) == EXPECTED_STATIC[module]
    assert len(names) == len(set(names))


def test_every_module_has_an_all():
    """A new module must declare its surface (and be pinned above)."""
    pinned = set(EXPECTED) | set(EXPECTED_STATIC)
    unpinned = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if module == "comfypack.serve.bento_service":  # the `bentoml serve` entry point, not an API
            continue
        if module not in pinned:
            unpinned.append(module)
    assert unpinned == [], f"modules without a pinned __all__: {unpinned}"


def test_top_level_reexports_are_the_same_objects():
    from comfypack import errors
    from comfypack.workflow import interface as workflow
    from comfypack.workflow import schema

    assert comfypack.WorkflowError is errors.WorkflowError
    assert comfypack.parse_interface is workflow.parse_interface
    assert comfypack.validate_request is schema.validate_request
    assert comfypack.__version__ == "0.1.0"

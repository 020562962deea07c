"""The BentoML service object that ``bentoml serve comfypack.bento_service:ComfyPack`` loads.

Its settings come from ``COMFYPACK_*`` environment variables (see :class:`ServeConfig`).
"""

from pathlib import Path

from .serving import ServeConfig, make_service

_REPO_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "workflows" / "image_adjust" / "workflow_api.json"

ComfyPack = make_service(ServeConfig.from_env(default_workflow=_REPO_EXAMPLE))

"""The BentoML service object that ``bentoml serve comfypack.serve.bento_service:ComfyPack`` loads.

Its settings come from ``COMFYPACK_*`` environment variables (see :class:`ServeConfig`).
"""

from pathlib import Path

from .bento_runtime import apply_bento_settings
from .service import ServeConfig, make_service

_ROOT = Path(__file__).resolve().parents[2]  # the repository, or the Bento's root
_REPO_EXAMPLE = _ROOT / "examples" / "workflows" / "image_adjust" / "workflow_api.json"

# inside a Bento from `comfypack build`: its settings (COMFYPACK_PACK, …) where the environment
# sets none
apply_bento_settings(_ROOT)
ComfyPack = make_service(ServeConfig.from_env(default_workflow=_REPO_EXAMPLE))

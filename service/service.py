"""The comfypack BentoML service (what ``bentofile.yaml`` builds).

    COMFYPACK_WORKFLOW=examples/workflows/image_adjust/workflow_api.json bentoml serve service.service:ComfyPack

Settings come from the environment: COMFYPACK_WORKFLOW (API-format JSON; default: the image
example), COMFYPACK_COMFYUI_DIR (the ComfyUI tree to run) or COMFYPACK_COMFYUI_URL (attach to a
running one), COMFYPACK_ENDPOINT (default ``generate``), COMFYPACK_TIMEOUT, COMFYPACK_PYTHON.
The workflow is read at import: the endpoint's types come from it.
"""

from comfypack.serve.bento_service import ComfyPack

__all__ = ["ComfyPack"]

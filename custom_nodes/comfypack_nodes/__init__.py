"""comfypack's ComfyUI nodes: typed inputs and outputs that mark a workflow's API.

Put this package in a ComfyUI ``custom_nodes`` directory. ``ComfyPackInput*``
nodes (category ``comfypack/inputs``) become the request fields of the
generated service, ``ComfyPackOutput*`` nodes (``comfypack/outputs``) its
response fields; see :mod:`.inputs` and :mod:`.outputs` for the widgets each
one has. The node schemas are built when ComfyUI asks for them; the only thing done at
import is registering comfypack's routes (see :mod:`.routes`) on ComfyUI's server.
"""

import os

from .inputs import INPUT_NODES
from .outputs import OUTPUT_NODES

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

NODE_CLASS_MAPPINGS = {node.NODE_ID: node for node in (*INPUT_NODES, *OUTPUT_NODES)}
NODE_DISPLAY_NAME_MAPPINGS = {
    node.NODE_ID: node.DISPLAY_NAME for node in (*INPUT_NODES, *OUTPUT_NODES)
}
WEB_DIRECTORY = "./web"


def _register_routes() -> None:
    try:
        import folder_paths
        from server import PromptServer
    except ImportError:  # imported outside a ComfyUI server (tests, tooling)
        return
    if getattr(PromptServer, "instance", None) is None:
        return
    from .routes import ComfyPackRoutes

    ComfyPackRoutes(
        folder_paths.get_input_directory(),
        folder_paths.get_output_directory(),
        os.path.dirname(os.path.abspath(folder_paths.__file__)),
    ).add_routes(PromptServer.instance.routes)


_register_routes()

"""comfypack's ComfyUI nodes: typed inputs and outputs that mark a workflow's API.

Put this package in a ComfyUI ``custom_nodes`` directory. ``ComfyPackInput*``
nodes (category ``comfypack/inputs``) become the request fields of the
generated service, ``ComfyPackOutput*`` nodes (``comfypack/outputs``) its
response fields; see :mod:`.inputs` and :mod:`.outputs` for the widgets each
one has. Importing the package has no side effects: the node schemas are
built when ComfyUI asks for them.
"""

from .inputs import INPUT_NODES
from .outputs import OUTPUT_NODES

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

NODE_CLASS_MAPPINGS = {node.NODE_ID: node for node in (*INPUT_NODES, *OUTPUT_NODES)}
NODE_DISPLAY_NAME_MAPPINGS = {
    node.NODE_ID: node.DISPLAY_NAME for node in (*INPUT_NODES, *OUTPUT_NODES)
}
WEB_DIRECTORY = "./web"

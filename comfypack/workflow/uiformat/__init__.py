"""Convert a UI-format workflow (what ComfyUI's *Save* writes) to the API format ``/prompt`` takes.

The conversion mirrors what ComfyUI's own frontend (``comfyui-frontend-package``) does in
``app.graphToPrompt()``, using a ComfyUI's ``/object_info`` for the node definitions. Frontends
differ; ``convert(..., frontend="1.45.21")`` picks the one to mirror (tested against the real
1.32.9, 1.45.21 and 1.58.1; see :class:`Frontend`):

- each node's widgets are rebuilt from its definition (inputs in ``input_order``: required, then
  optional, then what the frontend adds itself, e.g. the image ``upload`` button), and
  ``widgets_values`` are assigned to them in order. Widgets the frontend adds without an input
  (the "control after generate" combo after seeds, the upload buttons) take a value slot but are
  not sent. A dynamic combo (``COMFY_DYNAMICCOMBO_V3``) is followed by the widgets of its chosen
  option, named ``<combo>.<input>`` (e.g. ``resize_type.width``), which take the next values;
- an input with a link takes the link instead of its widget value; links are followed through
  ``Reroute`` nodes, bypassed nodes (mode 4: an output passes on the first input of a matching
  type) and subgraphs (node ids become ``"<subgraph node>:<inner node>"``; newer frontends first
  renumber a subgraph's nodes whose ids an earlier definition already uses; a subgraph node's saved
  values reach its promoted widgets, except in 1.33–1.45 where those show the inner widget's
  value; from 1.46 its values for the inner widgets its ``proxyWidgets`` name are that instance's,
  ``null`` too);
- ``PrimitiveNode`` values replace the widgets they feed; muted nodes (mode 2), notes and other
  frontend-only nodes are dropped, and links to dropped nodes removed (newer frontends: a muted
  node feeding a widget leaves the widget's own value; a muted or bypassed subgraph node drops
  all it contains);
- list values are sent as ``{"__value__": [...]}``; ``_meta.title`` is the node's title (or the
  node type's display name).

Missing node types are one :class:`~comfypack.errors.WorkflowError` listing them all.

Modules: ``frontend`` (node modes, widget types, :class:`Frontend` per version), ``graph`` (the
graph as read), ``widgets`` (widgets rebuilt from definitions, values, rounding), ``load`` (nodes
with widgets and links), ``prompts`` (``%date%``/``%Node.widget%`` and dynamic prompts), ``execute``
(the export walk: links through reroutes, bypasses and subgraphs), ``to_api`` (the API prompt: :func:`convert`).
"""

from .frontend import is_ui_format
from .prompts import dynamic_prompt
from .to_api import convert, missing_node_types

__all__ = ["is_ui_format", "convert", "missing_node_types", "dynamic_prompt"]

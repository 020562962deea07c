"""What the conversion knows of ComfyUI's frontends: node modes, type renames, widget types,
the nodes and buttons the frontend adds, and :class:`Frontend` — the behaviour of one
``comfyui-frontend-package`` version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["is_ui_format"]


MUTED = 2  # LGraphEventMode.NEVER


BYPASSED = 4  # LGraphEventMode.BYPASS


SUBGRAPH_INPUT = -10


SUBGRAPH_OUTPUT = -20


#: Node types the frontend renames when it loads a graph.
TYPE_RENAMES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
    "Load3DAnimation": "Load3D",
    "Preview3DAnimation": "Preview3D",
}


#: Frontend-only nodes: never sent to ComfyUI.
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})


DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


#: Input types the frontend draws as widgets (core widgets and its bundled extensions').
WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "BOOLEAN",
        "STRING",
        "MARKDOWN",
        "COMBO",
        "IMAGEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "CHART",
        "GALLERIA",
        "TEXTAREA",
        "LOAD_3D",
        "PREVIEW_3D",
        "AUDIO_UI",
        "AUDIOUPLOAD",
        "AUDIO_RECORD",
        "WEBCAM",
        "PAINTER",
        "CURVE",
        "BOUNDING_BOX",
        "BOUNDING_BOXES",
        "RANGE",
        "COLORS",
        DYNAMIC_COMBO,
    }
)


#: Save nodes whose ``filename_prefix`` gets ``%Node.widget%`` / ``%date:…%`` replacements.
SAVE_NODES = frozenset(
    {
        "SaveImage",
        "SaveVideo",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)


#: Nodes the frontend gives an audio player widget (no value slot) → whether it is sent (as "").
#: comfypack's own web extension gives its audio input one too, kept out of the prompt.
AUDIO_UI_NODES: dict[str, bool] = {
    "LoadAudio": True,
    "SaveAudio": True,
    "PreviewAudio": True,
    "SaveAudioMP3": True,
    "SaveAudioOpus": True,
    "SaveAudioAdvanced": True,
    "ComfyPackInputAudio": False,
}


#: The buttons newer frontends give ``Load3D`` after its file combo: (name, value), both saved and sent.
LOAD3D_BUTTONS = (
    ("upload 3d model", "upload3dmodel"),
    ("upload extra resources", "uploadExtraResources"),
    ("clear", "clear"),
)


_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone


_UNSET: Any = object()  # JavaScript's `undefined`: the key is left out of the JSON


@dataclass(frozen=True)
class Frontend:
    """What differs between the frontend versions comfypack mirrors (tested: 1.32.9, the one
    ComfyUI 0.3.75 pins; 1.45.21, pinned by 0.28.2; 1.58.1). A version between two tested ones
    behaves as the newer one."""

    version: tuple[int, ...]

    @classmethod
    def parse(cls, version: str | None) -> Frontend:
        """``"1.45.21"`` → its behaviour; ``None`` or unreadable → the newest comfypack knows."""
        nums = re.findall(r"\d+", version or "")
        return cls(tuple(int(n) for n in nums[:3]) if nums else (99,))

    @property
    def modern(self) -> bool:
        """1.33 and later: a muted node feeding an input resolves to nothing (the widget keeps its
        value); a muted or bypassed subgraph node on the root graph drops everything inside it;
        the ``PreviewAny`` text preview is not sent; the image-compare widget is sent; curves
        carry ``__type__``; subgraph node ids are made unique across definitions on load."""
        return self.version >= (1, 33)

    @property
    def instance_widget_values(self) -> bool:
        """1.46 and later: a subgraph node's ``widgets_values`` hold, for each ``proxyWidgets``
        entry naming an inner node, that instance's value of the inner widget — sent instead of
        the inner node's own value, ``null`` included (a value left out keeps the inner one)."""
        return self.version >= (1, 46)

    @property
    def instance_values_loaded(self) -> bool:
        """A subgraph node's saved ``widgets_values`` reach its promoted widgets — not in 1.33 to
        1.45, where a promoted widget is a view of the inner widget: that widget's value is sent."""
        return not self.modern or self.instance_widget_values

    @property
    def audio_ui_sent(self) -> bool:
        """The audio player widget is part of the prompt before 1.46 (1.58: it is not)."""
        return self.version < (1, 46)


def is_ui_format(data: Any) -> bool:
    """Whether ``data`` is a UI-format workflow (``nodes`` and ``links``), not an API one."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data

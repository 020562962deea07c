"""A node's widgets, rebuilt from its definition as the frontend builds them (input order,
added buttons, dynamic combos), the saved values assigned to them, and the frontend's rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .frontend import _UNSET, AUDIO_UI_NODES, DYNAMIC_COMBO, LOAD3D_BUTTONS, WIDGET_TYPES, Frontend
from .graph import _Widget

__all__ = []


def _spec(raw: Any, name: str, optional: bool) -> dict[str, Any]:
    """A V1 input spec (``["INT", {...}]`` or ``[[options], {...}]``) in the frontend's V2 form."""
    opts = (
        dict(raw[1])
        if isinstance(raw, list) and len(raw) > 1 and isinstance(raw[1], Mapping)
        else {}
    )
    head = raw[0] if isinstance(raw, list) and raw else None
    spec: dict[str, Any] = {"name": name, "isOptional": optional, **opts}
    if isinstance(head, list):
        spec.update(type="COMBO", options=head)
    elif head == "COMBO":
        spec.update(type="COMBO", options=opts.get("options") or [])
    else:
        spec["type"] = head if isinstance(head, str) else "UNKNOWN"
    return spec


def _is_media_upload(raw: Any) -> bool:
    opts = (
        raw[1] if isinstance(raw, list) and len(raw) > 1 and isinstance(raw[1], Mapping) else None
    )
    if not opts or not any(
        opts.get(k) is True for k in ("image_upload", "video_upload", "animated_image_upload")
    ):
        return False
    return isinstance(raw[0], list) or raw[0] == "COMBO"


def _ordered_specs(class_type: str, definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node's input specs in the frontend's order, with the inputs its extensions add."""
    section = definition.get("input") or {}
    required = dict(section.get("required") or {})
    if class_type in AUDIO_UI_NODES:
        required["audioUI"] = ["AUDIO_UI", {}]
    audio = required.get("audio")
    if (
        isinstance(audio, list)
        and len(audio) > 1
        and isinstance(audio[1], Mapping)
        and audio[1].get("audio_upload") is True
    ):
        required["upload"] = ["AUDIOUPLOAD", {}]
    media = next((name for name, raw in required.items() if _is_media_upload(raw)), None)
    if media is not None:
        required["upload"] = ["IMAGEUPLOAD", {**required[media][1], "imageInputName": media}]
    if class_type in ("SaveGLB", "Preview3D"):
        required["image"] = ["PREVIEW_3D"]
    specs: dict[str, dict[str, Any]] = {}
    for name, raw in required.items():
        specs[name] = _spec(raw, name, False)
    for name, raw in (section.get("optional") or {}).items():
        specs[name] = _spec(raw, name, True)
    order = definition.get("input_order")
    if not order:
        return list(specs.values())
    out = [
        specs[n] for n in order.get("required") or [] if n in specs and not specs[n]["isOptional"]
    ]
    out += [specs[n] for n in order.get("optional") or [] if n in specs and specs[n]["isOptional"]]
    seen = {s["name"] for s in out}
    return out + [s for s in specs.values() if s["name"] not in seen]


def _widget_kind(spec: Mapping[str, Any]) -> str | None:
    kind = spec.get("widgetType") or spec.get("type")
    return kind if kind in WIDGET_TYPES and not spec.get("forceInput") else None


def _combo_default(spec: Mapping[str, Any]) -> Any:
    if spec.get("default"):
        return spec["default"]
    if spec.get("options"):
        return spec["options"][0]
    return "Loading..." if spec.get("remote") else _UNSET


def _make_widgets(class_type: str, specs: list[dict[str, Any]], fe: Frontend) -> list[_Widget]:
    widgets: list[_Widget] = []
    for spec in specs:
        kind = _widget_kind(spec)
        if kind is None:
            continue
        name = spec["name"]
        if kind == "INT":
            widgets.append(_Widget(name, kind, spec, spec.get("default", 0)))
            control = spec.get("control_after_generate")
            if control if control is not None else name in ("seed", "noise_seed"):
                widgets.append(
                    _Widget("control_after_generate", "control", {}, "randomize", sent=False)
                )
        elif kind == "COMBO":
            widgets.append(_Widget(name, kind, spec, _combo_default(spec)))
            if class_type == "Load3D" and name == "model_file" and fe.modern:  # its buttons (sent)
                widgets += [_Widget(n, "button", {}, v) for n, v in LOAD3D_BUTTONS]
            if spec.get("control_after_generate") and not spec.get("multi_select"):
                widgets.append(
                    _Widget("control_after_generate", "control", {}, "randomize", sent=False)
                )
                widgets.append(_Widget("control_filter_list", "control", {}, "", sent=False))
        elif kind in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
            widgets.append(
                _Widget(name, kind, spec, "image" if kind == "IMAGEUPLOAD" else "", sent=False)
            )
        elif kind == "AUDIO_UI":  # an audio player: no value slot, sent as "" (or its file's URL)
            sent = AUDIO_UI_NODES.get(class_type, True) and fe.audio_ui_sent
            widgets.append(_Widget(name, kind, spec, "", slot=False, sent=sent))
        elif kind == DYNAMIC_COMBO:  # a combo whose chosen option brings its own widgets
            keys = [o.get("key") for o in spec.get("options") or [] if isinstance(o, Mapping)]
            combo = _Widget(
                name,
                kind,
                {**spec, "options": keys, "raw_options": spec.get("options") or []},
                keys[0] if keys else _UNSET,
            )
            widgets.append(combo)
            widgets += _dynamic_children(class_type, combo, fe)
        elif kind == "IMAGECOMPARE":  # before/after viewer: no value slot; newer frontends send it
            widgets.append(_Widget(name, kind, spec, ["", ""], slot=False, sent=fe.modern))
        elif kind == "FLOAT":
            widgets.append(_Widget(name, kind, spec, spec.get("default", 0)))
        elif kind == "BOOLEAN":
            widgets.append(_Widget(name, kind, spec, spec.get("default", False)))
        elif kind in ("STRING", "MARKDOWN", "TEXTAREA"):
            widgets.append(_Widget(name, kind, spec, spec.get("default") or ""))
        else:
            widgets.append(_Widget(name, kind, spec, spec.get("default", _UNSET)))
    if class_type == "PreviewAny" and not fe.modern:  # a read-only text preview (sent, empty)
        widgets.append(_Widget("preview", "MARKDOWN", {}, "", slot=False))
    return widgets


def _dynamic_children(class_type: str, combo: _Widget, fe: Frontend) -> list[_Widget]:
    """The widgets the chosen option of a dynamic combo brings, named ``<combo>.<input>``
    (required, then optional; nested dynamic combos expand in turn)."""
    option = next(
        (
            o
            for o in combo.spec.get("raw_options") or []
            if isinstance(o, Mapping) and o.get("key") == combo.value
        ),
        None,
    )
    if option is None:
        return []
    section = option.get("inputs") or {}
    specs = [
        _spec(raw, f"{combo.name}.{sub}", optional)
        for optional, part in ((False, "required"), (True, "optional"))
        for sub, raw in (section.get(part) or {}).items()
    ]
    return _make_widgets(class_type, specs, fe)


def _migrate_widgets_values(
    specs: list[dict[str, Any]], widgets: list[_Widget], values: list[Any]
) -> list[Any]:
    """The frontend's ``migrateWidgetsValues``: drop values saved for ``forceInput`` inputs."""
    names = {w.name for w in widgets}
    relevant = [s for s in specs if s["name"] in names or s.get("forceInput")]
    size = sum(
        2 if s.get("control_after_generate") or s["name"] in ("seed", "noise_seed") else 1
        for s in relevant
    )
    if size != len(values):
        return values
    return [
        v for i, v in enumerate(values) if not (i < len(relevant) and relevant[i].get("forceInput"))
    ]


def _round_int(w: _Widget, v: Any) -> Any:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return v
    step = w.spec.get("step") or 1
    if step == 1:
        return _js_round(v)
    base = (w.spec.get("min") or 0) % step
    return _js_round((v - base) / step) * step + base


def _round_float(w: _Widget, v: Any) -> Any:
    """The frontend's float widget callback: round to the step's precision, clamp."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return v
    step = w.spec.get("step")
    step = 0.5 if step is None else float(step)
    precision = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    spec_round = w.spec.get("round")
    rnd = 10.0**-precision if precision and not spec_round else spec_round
    if not rnd:
        return v
    value = round(_js_round(v / rnd) * rnd, precision)
    lo = w.spec.get("min")
    hi = w.spec.get("max")
    return min(max(value, 0 if lo is None else lo), 2048 if hi is None else hi)


def _js_round(x: float) -> int:
    return math.floor(x + 0.5)

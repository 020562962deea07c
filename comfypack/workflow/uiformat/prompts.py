"""Text the frontend rewrites before it sends a prompt: ``%date:…%`` and ``%Node.widget%``
replacements, and dynamic prompts (``{a|b}``) — :func:`dynamic_prompt`.
"""

from __future__ import annotations

import random
import re
from datetime import datetime
from typing import Any

from .frontend import _UNSET
from .graph import _Node

__all__ = ["dynamic_prompt"]


_DATE_PARTS = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")


def _format_date(fmt: str, now: datetime) -> str:
    def part(m: re.Match[str]) -> str:
        s = m.group(0)
        if s == "yy":
            return str(now.year)[2:]
        if s == "yyyy":
            return str(now.year)
        value = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}.get(
            s[0]
        )
        return s if value is None else str(value).zfill(len(s))

    return _DATE_PARTS.sub(part, fmt)


def _text_replacements(nodes: list[_Node], text: str) -> str:
    """The frontend's ``applyTextReplacements``: ``%Node.widget%`` and ``%date:FORMAT%``."""

    def sub(m: re.Match[str]) -> str:
        parts = m.group(1).split(".")
        if len(parts) != 2:
            return (
                _format_date(parts[0][5:], datetime.now())
                if parts[0].startswith("date:")
                else m.group(0)
            )
        found = [
            n for n in nodes if (n.raw.get("properties") or {}).get("Node name for S&R") == parts[0]
        ]
        found = found or [n for n in nodes if n.title == parts[0]]
        w = found[0].widget(parts[1]) if found else None
        if w is None:
            return m.group(0)
        value = "" if w.value is _UNSET or w.value is None else _js_str(w.value)
        return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", value)

    return re.sub(r"%([^%]+)%", sub, text)


def _js_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """The frontend's ``processDynamicPrompt``: strip comments, pick one of ``{a|b|c}``."""
    rng = rng or random.Random()
    text = re.sub(r"/\*[\s\S]*?\*/|//.*", "", text)
    pos = 0

    def escape() -> str:
        nonlocal pos
        ch = text[pos] if pos < len(text) else ""
        pos += 1
        return "\\" + ch

    def choice() -> str:
        nonlocal pos
        options: list[str] = []
        current, depth = "", 0
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch == "\\":
                current += escape()
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if not depth:
                    break
                depth -= 1
            elif ch == "|" and not depth:
                options.append(current)
                current = ""
                continue
            current += ch
        options.append(current)
        return dynamic_prompt(rng.choice(options), rng)

    out = ""
    while pos < len(text):
        ch = text[pos]
        pos += 1
        out += escape() if ch == "\\" else choice() if ch == "{" else ch
    return re.sub(r"\\([{}|])", r"\1", out)

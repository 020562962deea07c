"""Run a workflow through its Interface: request values in, typed outputs out.

:class:`WorkflowRunner` is shared by the service and ``comfypack run``:

1. :meth:`~WorkflowRunner.prepare` validates a request body and decodes file inputs — all the
   caller's mistakes are found here, before ComfyUI is touched;
2. :meth:`~WorkflowRunner.run` uploads files, rewrites the input nodes' value widgets, queues the
   prompt, waits for it on the websocket and collects every named output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import mimetypes
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..errors import ComfyUIError, FieldError, PromptRejected, RequestError
from ..workflow.interface import FILE_KINDS, Interface, OutputSpec
from ..workflow.media import DEFAULT_MAX_BYTES, InputLimits, MediaFile, decode_media
from ..workflow.schema import validate_request
from .client import ComfyUIClient, FileRef, ProgressEvent

__all__ = ["WorkflowRunner", "RunOutput", "OutputFile", "PreparedRequest"]

# the UI keys each output kind's node reports its files / values under
_FILE_KEYS = {
    "image": ("images",),
    "audio": ("audio",),
    "video": ("images", "video", "gifs"),
    "file": ("files",),
}
_VALUE_KEYS = {"text": "text", "number": "number", "json": "json"}


@dataclass(frozen=True)
class OutputFile:
    data: bytes
    media_type: str
    filename: str

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class PreparedRequest:
    values: dict[str, Any]
    files: dict[str, MediaFile]
    seeds: dict[str, int] = field(default_factory=dict)


@dataclass
class RunOutput:
    prompt_id: str
    outputs: dict[str, list[Any]]  # name → values (OutputFile for file kinds)
    specs: dict[str, OutputSpec]
    seeds: dict[str, int]
    #: output name → a URL per file, once they are uploaded (:mod:`comfypack.serve.storage`)
    stored: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self, urls: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        """Every named output (files as data: URIs, or their URLs in ``urls`` / :attr:`stored`;
        a list when the node produced several)."""
        out: dict[str, Any] = {}
        for name, values in self.outputs.items():
            stored = iter((urls if urls is not None else self.stored).get(name) or ())
            items = [
                (next(stored, None) or v.data_uri()) if isinstance(v, OutputFile) else v
                for v in values
            ]
            out[name] = items[0] if len(items) == 1 else items
        if self.seeds:
            out["seeds"] = dict(self.seeds)
        return out

    def write_to(self, outdir: Path) -> list[Path]:
        """Write the outputs into ``outdir``: each file as ``<name><ext>`` (``<name>_<i><ext>``
        when there are several), the other values and the seeds in ``outputs.json``; every file
        written atomically. Returns the paths written."""
        outdir = Path(outdir)
        written: list[Path] = []
        values: dict[str, Any] = {}
        for name, items in self.outputs.items():
            files = [v for v in items if isinstance(v, OutputFile)]
            for i, f in enumerate(files):
                ext = Path(f.filename).suffix
                path = outdir / (f"{name}{ext}" if len(files) == 1 else f"{name}_{i}{ext}")
                atomic_write(path, f.data)
                written.append(path)
            others = [v for v in items if not isinstance(v, OutputFile)]
            if others:
                values[name] = others[0] if len(others) == 1 else others
        if values or self.seeds:
            doc = {**values, **({"seeds": self.seeds} if self.seeds else {})}
            path = outdir / "outputs.json"
            atomic_write(path, json.dumps(doc, indent=2) + "\n")
            written.append(path)
        return written

    def single_file(self) -> OutputFile | None:
        """The file, when the workflow has exactly one output and it produced exactly one file
        (and it was not uploaded: then the answer is JSON with its URL)."""
        if len(self.outputs) == 1 and not self.stored:
            ((name, values),) = self.outputs.items()
            if (
                self.specs[name].kind in FILE_KINDS
                and len(values) == 1
                and isinstance(values[0], OutputFile)
            ):
                return values[0]
        return None


class WorkflowRunner:
    """Runs one workflow (API format) with its :class:`Interface` on a :class:`ComfyUIClient`."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        interface: Interface,
        *,
        max_upload_bytes: int = DEFAULT_MAX_BYTES,
        cleanup: bool = True,
        limits: InputLimits | None = None,
    ) -> None:
        self._workflow_json = json.dumps(workflow)
        self.workflow = json.loads(self._workflow_json)
        self.interface = interface
        self.max_upload_bytes = max_upload_bytes
        #: URL policy and pixel limits of file inputs (default: public URLs only)
        self.limits = limits or InputLimits(max_bytes=max_upload_bytes)
        self.cleanup = cleanup
        self._specs = {o.name: o for o in interface.outputs}

    # -- 1. the caller's side -------------------------------------------------------------------

    async def prepare(self, body: Any) -> PreparedRequest:
        """:meth:`validate` then :meth:`decode`."""
        return await self.decode(self.validate(body))

    def validate(self, body: Any) -> dict[str, Any]:
        """The request's values, checked against the interface (cheap: nothing is fetched)."""
        return validate_request(self.interface, body)

    async def decode(self, values: dict[str, Any]) -> PreparedRequest:
        """Decode (and fetch) the file inputs of validated ``values``; draw missing seeds."""
        files: dict[str, MediaFile] = {}
        problems: list[RequestError] = []

        async def one(name: str, kind: str) -> None:
            try:
                files[name] = await decode_media(
                    kind, values[name], name, max_bytes=self.max_upload_bytes, limits=self.limits
                )
            except RequestError as e:
                problems.append(e)

        await asyncio.gather(
            *(
                one(s.name, s.kind)
                for s in self.interface.inputs
                if s.is_file and values.get(s.name) is not None
            )
        )
        if problems:
            if len(problems) == 1:
                raise problems[0]
            details = [d for p in problems for d in (p.details or [])]
            status = max(p.status for p in problems)
            raise RequestError(
                "; ".join(p.message for p in problems), details=details, status=status
            )
        images = {name: f.pixels for name, f in files.items() if f.pixels}
        total = sum(images.values())
        if total > self.limits.max_request_pixels:
            message = (
                f"the images together are {total / 1e6:.1f} Mpx; the limit per request is "
                f"{self.limits.max_request_pixels / 1e6:.1f} Mpx (send smaller images)"
            )
            raise RequestError(
                f"{', '.join(images)}: {message}",
                status=413,
                details=[FieldError(name, message) for name in images],
            )
        seeds = {}
        for spec in self.interface.seed_inputs:
            if values.get(spec.name) is None:
                values[spec.name] = random.randint(0, 2**53 - 1)  # exact in JSON numbers everywhere
            seeds[spec.name] = values[spec.name]
        return PreparedRequest(values, files, seeds)

    # -- 2. ComfyUI's side ----------------------------------------------------------------------

    def build_prompt(
        self, values: Mapping[str, Any], uploaded: Mapping[str, str], run_id: str
    ) -> dict[str, Any]:
        prompt: dict[str, Any] = json.loads(self._workflow_json)
        for spec in self.interface.inputs:
            node = prompt[spec.node_id]["inputs"]
            node[spec.widget] = uploaded[spec.name] if spec.is_file else values[spec.name]
        for out in self.interface.outputs:
            node = prompt[out.node_id]["inputs"]
            if out.is_file and "filename_prefix" in node:
                node["filename_prefix"] = f"comfypack/{run_id}_{out.name}"
        return prompt

    async def run(
        self,
        client: ComfyUIClient,
        request: PreparedRequest,
        *,
        timeout: float | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> RunOutput:
        run_id = str(uuid.uuid4())
        uploaded_refs: list[FileRef] = []
        try:
            uploaded: dict[str, str] = {}
            for name, media in request.files.items():
                stored = await self._store_input(client, media.data, f"{run_id}_{media.filename}")
                uploaded[name] = stored
                sub, _, fname = stored.rpartition("/")
                uploaded_refs.append(FileRef(fname, sub, "input"))
            prompt = self.build_prompt(request.values, uploaded, run_id)
            try:
                result = await client.run(
                    prompt, timeout=timeout, on_progress=on_progress, prompt_id=run_id
                )
            except PromptRejected as e:
                raise self._name_fields(e) from None
            outputs: dict[str, list[Any]] = {}
            for spec in self.interface.outputs:
                ui = result.outputs.get(spec.node_id)
                if ui is None:
                    raise ComfyUIError(
                        f"output {spec.name!r} (node {spec.node_id}) produced nothing"
                    )
                outputs[spec.name] = await self._collect(client, spec, ui)
            return RunOutput(result.prompt_id, outputs, self._specs, request.seeds)
        finally:
            if self.cleanup:
                await self._cleanup(client, run_id, uploaded_refs)

    async def _store_input(self, client: ComfyUIClient, data: bytes, filename: str) -> str:
        """Put an input file where ComfyUI reads it: straight into a local worker's input dir
        (no HTTP round trip), else ``POST /upload/image``."""
        folder = client.local_path(FileRef("", "comfypack", "input"))
        if folder is None:
            return await client.upload(data, filename, subfolder="comfypack")

        def write() -> None:
            atomic_write(folder / filename, data)

        await asyncio.to_thread(write) if len(data) > 1 << 20 else write()
        return f"comfypack/{filename}"

    async def _collect(
        self, client: ComfyUIClient, spec: OutputSpec, ui: Mapping[str, Any]
    ) -> list[Any]:
        if spec.kind in FILE_KINDS:
            refs: list[FileRef] = []
            for key in _FILE_KEYS[spec.kind]:
                refs.extend(
                    FileRef.from_ui(item) for item in ui.get(key) or [] if isinstance(item, dict)
                )
                if refs:
                    break
            datas = await asyncio.gather(*(client.read_file(r) for r in refs))
            return [
                OutputFile(
                    d, mimetypes.guess_type(r.filename)[0] or "application/octet-stream", r.filename
                )
                for r, d in zip(refs, datas, strict=True)
            ]
        return list(ui.get(_VALUE_KEYS[spec.kind]) or [])

    async def _cleanup(self, client: ComfyUIClient, run_id: str, uploaded: list[FileRef]) -> None:
        """Remove this run's uploads and outputs (``comfypack/<run_id>_*``): unlinks, no rmtree."""
        out = client.local_path(FileRef("", "comfypack", "output"))
        if out is None:  # ComfyUI's folders are not ours to reach: ask its comfypack routes
            await client.delete_run(run_id)
            return
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(out):
                if entry.name.startswith(run_id + "_"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        for ref in uploaded:
            path = client.local_path(ref)
            if path is not None:
                path.unlink(missing_ok=True)

    def _name_fields(self, error: PromptRejected) -> PromptRejected:
        """Point ComfyUI's node_errors at our API field names where the node is an input."""
        node_errors = (error.details or {}).get("node_errors") or {}
        by_node = {s.node_id: s.name for s in self.interface.inputs}
        fields = [
            FieldError(
                by_node[n],
                "; ".join(
                    str(e.get("details") or e.get("message"))
                    for e in (info or {}).get("errors", [])
                ),
            )
            for n, info in node_errors.items()
            if n in by_node
        ]
        if fields:
            error.details = {**error.details, "fields": fields}
        return error

"""Speak ComfyUI's own HTTP + websocket protocol.

One :class:`ComfyUIClient` keeps one aiohttp session and one websocket (its own ``client_id``)
open to a ComfyUI server. A run is::

    POST /upload/image            (each file input)
    POST /prompt {prompt, client_id, prompt_id}
    websocket: progress … executing{node: null, prompt_id} / execution_success | execution_error
    GET  /history/{prompt_id}     → each output node's UI dict
    (file outputs are read from the output dir when it is local, else GET /view)

No polling: completion comes from the websocket. If the websocket drops, every run in flight
fails fast with :class:`~comfypack.errors.ComfyUIUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import (
    ComfyUIError,
    ComfyUITimeout,
    ComfyUIUnavailable,
    ExecutionFailed,
    PromptRejected,
)

__all__ = ["ComfyUIClient", "RunResult", "FileRef", "ProgressEvent"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileRef:
    """A file ComfyUI wrote: ``filename`` in ``subfolder`` of its ``type`` dir (output/temp/input)."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @classmethod
    def from_ui(cls, item: Mapping[str, Any]) -> FileRef:
        return cls(
            str(item["filename"]),
            str(item.get("subfolder") or ""),
            str(item.get("type") or "output"),
        )


@dataclass
class RunResult:
    prompt_id: str
    outputs: dict[str, dict[str, Any]]  # node_id → UI dict from /history


@dataclass(frozen=True)
class ProgressEvent:
    prompt_id: str
    node: str | None
    value: int | None = None
    max: int | None = None


@dataclass
class _Pending:
    future: asyncio.Future[None]
    on_progress: Callable[[ProgressEvent], None] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


class ComfyUIClient:
    """An asyncio client for one ComfyUI server.

    ``output_dir``: where that server writes outputs, when it is on this machine (files are then
    read from disk instead of over HTTP).
    """

    def __init__(
        self,
        base_url: str,
        *,
        output_dir: str | Path | None = None,
        input_dir: str | Path | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = str(uuid.uuid4())
        self.output_dir = Path(output_dir) if output_dir else None
        self.input_dir = Path(input_dir) if input_dir else None
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._connect_lock = asyncio.Lock()

    # -- connection -----------------------------------------------------------------------------

    async def __aenter__(self) -> ComfyUIClient:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                connector=aiohttp.TCPConnector(limit=64, force_close=False),
            )
        return self._session

    async def connect(self) -> None:
        """Open the websocket (idempotent)."""
        async with self._connect_lock:
            if self.connected:
                return
            ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
            try:
                self._ws = await self._http().ws_connect(
                    f"{ws_url}/ws?clientId={self.client_id}",
                    heartbeat=30,
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5),
                )
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                raise ComfyUIUnavailable(f"cannot reach ComfyUI at {self.base_url}: {e}") from e
            self._reader = asyncio.create_task(self._read_loop(self._ws), name="comfyui-ws")

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if ws is not None:
            await ws.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._fail_all(ComfyUIUnavailable("the ComfyUI client was closed"))

    def _fail_all(self, error: Exception) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        self._dispatch(json.loads(msg.data))
                    except (ValueError, KeyError, TypeError):
                        logger.debug("ignoring malformed ComfyUI message: %.200s", msg.data)
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
                # binary frames are previews: not needed
        finally:
            if self._ws is ws:
                self._ws = None
            self._fail_all(
                ComfyUIUnavailable(
                    f"lost the websocket to ComfyUI at {self.base_url} (did it stop or crash?)"
                )
            )

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        data = message.get("data") or {}
        prompt_id = str(data.get("prompt_id") or "")
        pending = self._pending.get(prompt_id) if prompt_id else None
        if pending is None or pending.future.done():
            return
        if kind == "executing":
            if data.get("node") is None:
                pending.future.set_result(None)
            elif pending.on_progress:
                pending.on_progress(ProgressEvent(prompt_id, data.get("node")))
        # (``execution_success`` comes before ComfyUI writes the history; wait for executing/null)
        elif kind == "progress" and pending.on_progress:
            pending.on_progress(
                ProgressEvent(prompt_id, data.get("node"), data.get("value"), data.get("max"))
            )
        elif kind == "execution_error":
            # the caller gets the node, its type and the message; the traceback (server paths,
            # code) goes to the log only
            failed = data.get("node_id")
            text = str(data.get("exception_message") or "").strip()[:1000]
            trace = data.get("traceback")
            logger.error(
                "prompt %s: node %s (%s) failed: %s\n%s",
                prompt_id,
                failed,
                data.get("node_type"),
                text,
                "".join(trace) if isinstance(trace, list) else trace or "",
            )
            pending.future.set_exception(
                ExecutionFailed(
                    f"node {failed} ({data.get('node_type')}) failed: {text}",
                    details={
                        "node_id": failed,
                        "node_type": data.get("node_type"),
                        "exception_type": str(data.get("exception_type") or "").rsplit(".", 1)[-1],
                        "exception_message": text,
                    },
                )
            )
        elif kind == "execution_interrupted":
            pending.future.set_exception(
                ComfyUIError(f"the prompt was interrupted in ComfyUI at node {data.get('node_id')}")
            )

    # -- HTTP -----------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        try:
            return await self._http().request(method, f"{self.base_url}{path}", **kw)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise ComfyUIUnavailable(f"cannot reach ComfyUI at {self.base_url}: {e}") from e

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when the server answers ``GET /system_stats``."""
        try:
            resp = await self._request(
                "GET", "/system_stats", timeout=aiohttp.ClientTimeout(total=timeout)
            )
            async with resp:
                return resp.status == 200
        except ComfyUIUnavailable:
            return False

    async def get_json(self, path: str) -> Any:
        resp = await self._request("GET", path)
        async with resp:
            if resp.status != 200:
                raise ComfyUIError(
                    f"GET {path} answered {resp.status}: {(await resp.text())[:500]}"
                )
            return await resp.json()

    async def upload(self, data: bytes, filename: str, *, subfolder: str = "comfypack") -> str:
        """Upload a file into ComfyUI's input dir; returns the name nodes take (``sub/file``)."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        form.add_field("subfolder", subfolder)
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        resp = await self._request("POST", "/upload/image", data=form)
        async with resp:
            if resp.status != 200:
                raise ComfyUIError(
                    f"uploading {filename} to ComfyUI failed ({resp.status}): "
                    f"{(await resp.text())[:500]}"
                )
            info = await resp.json()
        name = info["name"]
        return f"{info['subfolder']}/{name}" if info.get("subfolder") else name

    async def queue_prompt(self, prompt: Mapping[str, Any], prompt_id: str) -> None:
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        resp = await self._request("POST", "/prompt", json=body)
        async with resp:
            try:
                payload = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                payload = {"error": {"message": (await resp.text())[:500]}}
            node_errors = payload.get("node_errors") if isinstance(payload, dict) else None
            if resp.status == 200 and not node_errors:
                return
            if resp.status == 200:
                # ComfyUI queued the outputs it could and reported the others' errors: the
                # workflow as a whole was not accepted; take it back out of the queue
                await self.cancel(prompt_id)
                summary = _summarize_node_errors(
                    node_errors if isinstance(node_errors, Mapping) else {}
                )
                raise PromptRejected(
                    "ComfyUI rejected part of the prompt" + (f" ({summary})" if summary else ""),
                    details={"node_errors": node_errors, "error": None},
                )
            err = payload.get("error") if isinstance(payload, dict) else None
            message = err.get("message") if isinstance(err, dict) else str(err)
            detail = err.get("details") if isinstance(err, dict) else None
            if resp.status == 400:
                text = message or "ComfyUI rejected the prompt"
                if detail:
                    text += f": {detail}"
                summary = _summarize_node_errors(node_errors or {})
                if summary:
                    text += f" ({summary})"
                raise PromptRejected(text, details={"node_errors": node_errors or {}, "error": err})
            raise ComfyUIError(f"ComfyUI /prompt answered {resp.status}: {message}")

    async def run(
        self,
        prompt: Mapping[str, Any],
        *,
        timeout: float | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        prompt_id: str | None = None,
    ) -> RunResult:
        """Queue ``prompt`` and wait (on the websocket) until it finishes; return its outputs."""
        await self.connect()
        prompt_id = prompt_id or str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), on_progress)
        self._pending[prompt_id] = pending
        try:
            try:
                await self.queue_prompt(prompt, prompt_id)
                await asyncio.wait_for(asyncio.shield(pending.future), timeout)
            except asyncio.TimeoutError as e:
                await self.cancel(prompt_id)
                raise ComfyUITimeout(
                    f"the prompt did not finish within {timeout:g} s; it was cancelled"
                ) from e
            except asyncio.CancelledError:
                # the caller went away (maybe mid-POST): ComfyUI may hold the prompt already
                await asyncio.shield(self.cancel(prompt_id))
                raise
            history = await self.get_json(f"/history/{prompt_id}")
        finally:
            self._pending.pop(prompt_id, None)
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if not entry:
            raise ComfyUIError(f"ComfyUI has no history for prompt {prompt_id}")
        return RunResult(prompt_id, dict(entry.get("outputs") or {}))

    async def cancel(self, prompt_id: str) -> None:
        """Remove a queued prompt, or interrupt it if it is running (best effort)."""
        with contextlib.suppress(ComfyUIError):
            resp = await self._request("POST", "/queue", json={"delete": [prompt_id]})
            resp.release()
            resp = await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
            resp.release()

    async def delete_run(self, run_id: str) -> bool:
        """Ask ComfyUI (comfypack's node routes) to delete a run's inputs and outputs."""
        try:
            resp = await self._request(
                "DELETE", f"/comfypack/runs/{run_id}", timeout=aiohttp.ClientTimeout(total=10)
            )
        except ComfyUIUnavailable:
            return False
        async with resp:
            return resp.status == 200

    async def read_file(self, ref: FileRef) -> bytes:
        """The bytes of a file ComfyUI wrote (from disk when local, else ``GET /view``)."""
        base = {"output": self.output_dir, "input": self.input_dir}.get(ref.type)
        if base is not None:
            path = (base / ref.subfolder / ref.filename).resolve()
            if path.is_relative_to(base.resolve()) and path.is_file():
                return await asyncio.to_thread(path.read_bytes)
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        resp = await self._request("GET", "/view", params=params)
        async with resp:
            if resp.status != 200:
                raise ComfyUIError(f"cannot fetch {ref.filename} from ComfyUI ({resp.status})")
            return await resp.read()

    def local_path(self, ref: FileRef) -> Path | None:
        base = {"output": self.output_dir, "input": self.input_dir}.get(ref.type)
        return None if base is None else base / ref.subfolder / ref.filename


def _summarize_node_errors(node_errors: Mapping[str, Any]) -> str:
    parts = []
    for node_id, info in node_errors.items():
        for err in (info or {}).get("errors", []):
            parts.append(
                f"node {node_id} ({info.get('class_type')}): {err.get('message')}: "
                f"{err.get('details')}"
            )
    return "; ".join(parts)

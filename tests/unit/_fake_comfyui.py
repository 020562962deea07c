"""A tiny fake ComfyUI (aiohttp.web, in-process on 127.0.0.1, random port) for unit tests.

It speaks just enough of ComfyUI's protocol for :class:`comfypack.comfyui.client.ComfyUIClient`:
``/ws`` (messages for the prompts queued by that client id), ``POST /prompt`` (200, or 400 with
``node_errors``), ``/history/{id}``, ``/upload/image``, ``/view``, ``/system_stats``, ``/queue``
and ``/interrupt``. It records every request so tests can assert what the client sent.

``mode`` decides what a queued prompt does:

========== ====================================================================================
ok         progress messages, then ``executing`` with ``node: null`` (history stored just before)
eager      like ok, but every message is sent *before* ``/prompt`` answers
success    ``execution_success`` (before the history exists), then ``executing`` null
error      ``execution_error`` for node 3
interrupt  ``execution_interrupted``
hang       nothing (the prompt never finishes)
drop       the server closes the client's websocket
nohistory  finishes, but ``/history`` has nothing for it
reject     ``/prompt`` answers 400 with ``node_errors``
partial    ``/prompt`` answers 200 *with* ``node_errors`` (some outputs queued, others invalid)
http500    ``/prompt`` answers 500
========== ====================================================================================
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

NODE_ERRORS = {
    "3": {
        "errors": [
            {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": "upscale_method: 'cubic' not in ['nearest-exact', 'bilinear']",
                "extra_info": {},
            }
        ],
        "dependent_outputs": ["10"],
        "class_type": "ImageScale",
    }
}


class FakeComfyUI:
    def __init__(self, *, input_dir: Path | None = None, output_dir: Path | None = None) -> None:
        self.mode = "ok"
        self.input_dir = input_dir
        self.output_dir = output_dir
        self.prompts: list[dict[str, Any]] = []
        self.ws_client_ids: list[str] = []
        self.ws_close_codes: list[int | None] = []
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.interrupts: list[Any] = []
        self.queue_posts: list[Any] = []
        self.uploads: list[dict[str, Any]] = []
        self.views: list[dict[str, str]] = []
        self.files: dict[str, bytes] = {}  # filename → bytes served by /view
        self.history: dict[str, dict[str, Any]] = {}
        #: prompt_id → {node_id: ui dict}: what /history reports for a finished prompt
        self.outputs: Callable[[str], dict[str, Any]] = lambda pid: {"9": {"text": ["done"]}}
        #: called with (prompt_id) when a prompt finishes in mode ok (e.g. to write output files)
        self.on_finish: Callable[[str], None] | None = None
        self.prompt_received = asyncio.Event()
        self.ws_connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeComfyUI:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/view", self._view)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_post("/queue", self._queue)
        app.router.add_post("/interrupt", self._interrupt)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def drop_websockets(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()

    # -- handlers -----------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.query.get("clientId", "")
        self.ws_client_ids.append(client_id)
        self.sockets[client_id] = ws
        await ws.send_json(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id},
            }
        )
        self.ws_connected.set()
        async for _ in ws:
            pass
        self.ws_close_codes.append(ws.close_code)  # 1000: the client closed it properly
        return ws

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.prompts.append(body)
        self.prompt_received.set()
        if self.mode == "reject":
            return web.json_response(
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": NODE_ERRORS,
                },
                status=400,
            )
        if self.mode == "http500":
            return web.Response(status=500, text="internal boom")
        prompt_id = body.get("prompt_id") or "generated"
        if self.mode == "partial":
            return web.json_response(
                {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": NODE_ERRORS}
            )
        if self.mode == "eager":
            await self._execute(body["client_id"], prompt_id)
        else:
            task = asyncio.get_running_loop().create_task(
                self._execute(body["client_id"], prompt_id)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(
            {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}
        )

    async def _execute(self, client_id: str, prompt_id: str) -> None:
        ws = self.sockets[client_id]
        if self.mode == "drop":
            await ws.close()
            return
        if self.mode == "hang":
            return
        send = ws.send_json
        await send({"type": "execution_start", "data": {"prompt_id": prompt_id}})
        # another client's prompt finishing must not finish ours
        await send({"type": "executing", "data": {"node": None, "prompt_id": "someone-else"}})
        await send({"type": "executing", "data": {"node": "1", "prompt_id": prompt_id}})
        await send(
            {
                "type": "progress",
                "data": {"value": 1, "max": 2, "node": "1", "prompt_id": prompt_id},
            }
        )
        await ws.send_bytes(b"\x00\x00\x00\x01preview-jpeg")
        await ws.send_str("{not json")
        if self.mode == "error":
            await send(
                {
                    "type": "execution_error",
                    "data": {
                        "prompt_id": prompt_id,
                        "node_id": "3",
                        "node_type": "ImageScale",
                        "executed": ["1"],
                        "exception_message": "boom: tensor sizes differ\n",
                        "exception_type": "RuntimeError",
                        "traceback": ["  File x.py\n"],
                        "current_inputs": {},
                        "current_outputs": {},
                    },
                }
            )
            return
        if self.mode == "interrupt":
            await send(
                {
                    "type": "execution_interrupted",
                    "data": {
                        "prompt_id": prompt_id,
                        "node_id": "1",
                        "node_type": "X",
                        "executed": [],
                    },
                }
            )
            return
        await send(
            {"type": "executed", "data": {"node": "9", "output": {}, "prompt_id": prompt_id}}
        )
        if self.mode == "success":
            # as in ComfyUI: execution_success comes *before* the history is written
            await send({"type": "execution_success", "data": {"prompt_id": prompt_id}})
        if self.mode != "nohistory":
            if self.on_finish:
                self.on_finish(prompt_id)
            self.history[prompt_id] = {
                "prompt": [],
                "outputs": self.outputs(prompt_id),
                "status": {"status_str": "success", "completed": True},
            }
        await send({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        data = image.file.read()  # type: ignore[union-attr]
        record = {
            "filename": image.filename,
            "data": data,  # type: ignore[union-attr]
            **{k: form.get(k) for k in ("subfolder", "type", "overwrite")},
        }
        self.uploads.append(record)
        subfolder = str(form.get("subfolder") or "")
        if self.input_dir is not None:
            target = self.input_dir / subfolder / image.filename  # type: ignore[union-attr]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return web.json_response({"name": image.filename, "subfolder": subfolder, "type": "input"})  # type: ignore[union-attr]

    async def _view(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        self.views.append(params)
        data = self.files.get(params.get("filename", ""))
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"system": {"os": "posix", "comfyui_version": "0.3.75"}, "devices": []}
        )

    async def _queue(self, request: web.Request) -> web.Response:
        self.queue_posts.append(json.loads(await request.text() or "null"))
        return web.json_response({})

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.interrupts.append(json.loads(await request.text() or "null"))
        return web.json_response({})

"""ComfyUIClient against ComfyUI 0.3.75's message *order*, replayed by a small stand-in server.

The real server's order for one prompt (``main.py`` ``prompt_worker`` / ``execution.py``):

1. ``execution_success`` — sent at the end of ``PromptExecutor.execute_async``;
2. ``PromptQueue.task_done`` stores the prompt's history (``GET /history/{id}`` is empty before);
3. ``executing`` with ``node: null`` — sent by ``prompt_worker`` after ``task_done``.

Between 1 and 2 the worker thread still has work to do; on a loaded machine a client that reads the
history as soon as it sees ``execution_success`` finds nothing ("ComfyUI has no history for prompt",
seen in ~15% of short runs before the client waited for ``executing``/null). The real ComfyUI only
loses that race now and then, so the stand-in widens the gap to make the regression test
deterministic. It needs no ComfyUI and could live in tests/unit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from comfypack.comfyui.client import ComfyUIClient

pytestmark = pytest.mark.integration

GAP_S = 0.3  # between execution_success and the history being stored
OUTPUTS = {"2": {"text": ["done"]}}


async def serve_stand_in() -> tuple[web.AppRunner, str]:
    sockets: dict[str, web.WebSocketResponse] = {}
    history: dict[str, Any] = {}

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        sockets[request.query["clientId"]] = sock
        async for _ in sock:
            pass
        return sock

    async def finish(client_id: str, prompt_id: str) -> None:
        sock = sockets[client_id]
        await sock.send_json({"type": "execution_start", "data": {"prompt_id": prompt_id}})
        await sock.send_json({"type": "executing", "data": {"node": "2", "prompt_id": prompt_id}})
        await sock.send_json({"type": "execution_success", "data": {"prompt_id": prompt_id}})
        await asyncio.sleep(GAP_S)  # the worker thread, still busy before task_done()
        history[prompt_id] = {"prompt": [], "outputs": OUTPUTS, "status": {"completed": True}}
        await sock.send_json({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}})

    async def prompt(request: web.Request) -> web.Response:
        body = await request.json()
        asyncio.get_running_loop().create_task(finish(body["client_id"], body["prompt_id"]))
        return web.json_response({"prompt_id": body["prompt_id"], "number": 0, "node_errors": {}})

    async def get_history(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        return web.json_response({prompt_id: history[prompt_id]} if prompt_id in history else {})

    app = web.Application()
    app.add_routes(
        [
            web.get("/ws", ws),
            web.post("/prompt", prompt),
            web.get("/history/{prompt_id}", get_history),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def test_run_waits_until_the_history_is_stored() -> None:
    async def go() -> None:
        runner, url = await serve_stand_in()
        try:
            async with ComfyUIClient(url) as client:
                result = await client.run({"1": {"class_type": "X", "inputs": {}}}, timeout=10)
            assert result.outputs == OUTPUTS
        finally:
            await runner.cleanup()

    asyncio.run(go())

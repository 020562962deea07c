"""HTTP routes comfypack adds to ComfyUI's server (under ``/comfypack/``).

Written as a small object with :meth:`ComfyPackRoutes.add_routes`, so the routes can be
registered on any aiohttp ``RouteTableDef`` (ComfyUI's ``PromptServer.instance.routes``).

- ``DELETE /comfypack/runs/{run_id}``: remove what one comfypack run left in ComfyUI — its
  uploaded inputs (``input/comfypack/<run_id>_*``) and outputs (``output/comfypack/<run_id>_*``).
  A service attached to a ComfyUI by URL cannot reach those folders itself.
"""

from __future__ import annotations

import os
import re

from aiohttp import web

__all__ = ["ComfyPackRoutes"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": None}}, status=status)


class ComfyPackRoutes:
    def __init__(self, input_dir: str, output_dir: str) -> None:
        self.input_dir = input_dir
        self.output_dir = output_dir

    def add_routes(self, routes: web.RouteTableDef) -> None:
        routes.delete("/comfypack/runs/{run_id}")(self.delete_run)

    async def delete_run(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        if not _RUN_ID.match(run_id):
            return _error(400, "bad_request", "run_id must be 32 lowercase hex digits")
        removed = 0
        for base in (self.input_dir, self.output_dir):
            folder = os.path.join(base, "comfypack")
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith(run_id + "_"):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
        return web.json_response({"run_id": run_id, "removed": removed})

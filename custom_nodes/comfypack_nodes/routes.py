"""HTTP routes comfypack adds to ComfyUI's server (under ``/comfypack/``).

Written as a small object with :meth:`ComfyPackRoutes.add_routes`, so the routes can be
registered on any aiohttp ``RouteTableDef`` (ComfyUI's ``PromptServer.instance.routes``).
The canvas extension (``web/comfypack.js``) drives them; the request bodies are JSON with the
API-format ``workflow`` (the frontend's ``app.graphToPrompt().output``) and, optionally, the UI
graph as ``ui_workflow`` and a ``name``.

- ``POST /comfypack/interface``: the typed interface (``comfypack inspect --json``) plus the
  workflow's sha256 and an example request; a broken one is a 400 whose ``details`` name each
  field and the node ids declaring it.
- ``POST /comfypack/lock`` / ``POST /comfypack/pack``: start a job (202 + job id); follow it with
  ``GET /comfypack/jobs/{id}`` (stage, fraction done, bytes hashed, log); a finished pack or lock
  is fetched with ``GET /comfypack/download/{opaque id}`` — never by path.
- ``POST /comfypack/serve``: start ``comfypack serve`` for this workflow, attached to this ComfyUI
  (one per workflow sha256; 202 + port and URLs); ``GET /comfypack/serve`` lists them,
  ``GET /comfypack/serve/{id}`` reports state and log lines, ``DELETE /comfypack/serve/{id}``
  stops it (SIGTERM to its process group, SIGKILL after a grace period; nothing is left behind).
- ``POST /comfypack/build`` / ``POST /comfypack/deploy``: pack, then ``comfypack build`` /
  ``comfypack deploy --target bentocloud`` as jobs — 501 when this comfypack has no such command,
  412 for deploy when ``bentoml cloud login`` was not done (no API key ever goes through the
  browser). ``GET /comfypack/capabilities`` says which of those are available.
- ``DELETE /comfypack/runs/{run_id}``: remove what one comfypack run left in ComfyUI — its
  uploaded inputs (``input/comfypack/<run_id>_*``) and outputs (``output/comfypack/<run_id>_*``).
  A service attached to a ComfyUI by URL cannot reach those folders itself.

Safety: every route refuses cross-origin browser requests (``Sec-Fetch-Site`` / ``Origin`` vs the
``Host``) with 403, and requests whose ``Host`` is not one of this ComfyUI's names (loopback
names and addresses, the address it was reached on, ``COMFYPACK_ALLOWED_HOSTS``) with 403 — a
page on ``evil.example`` whose DNS name was rebound to this machine is same-origin with itself,
but its ``Host`` gives it away. POSTs take ``application/json`` only (415), and errors are JSON
``{"error": {"type", "message", "details"}}``. Long work never runs on ComfyUI's event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import ipaddress
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from . import _work
from ._jobs import Downloads, JobFailed, Jobs, describe_exception, error_body
from ._services import Services

__all__ = ["ComfyPackRoutes"]

logger = logging.getLogger("comfypack.routes")

# a run id is a canonical UUID string (what every ComfyUI accepts as a prompt id)
_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_SERVICE_ID = re.compile(r"^[0-9a-f]{16}$")
_DOWNLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")

Handler = Callable[["ComfyPackRoutes", web.Request, Any], Awaitable[web.StreamResponse]]


def _error(status: int, kind: str, message: str, details: Any = None) -> web.Response:
    return web.json_response(error_body(kind, message, details), status=status)


def _netloc(scheme: str, netloc: str) -> str:
    netloc = netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def cross_origin(request: web.Request) -> str | None:
    """Why ``request`` is a cross-origin browser request, or None. Requests without ``Origin``
    and ``Sec-Fetch-Site`` (curl, the services themselves) are not browser requests."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site!r}"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if origin == "null":
        return "Origin is null"
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"Origin {origin!r} is not an http(s) origin"
    hosts = [h for h in (request.headers.get("Host"), request.headers.get("X-Forwarded-Host")) if h]
    mine = {_netloc(parts.scheme, h.split(",")[0].strip()) for h in hosts}
    if _netloc(parts.scheme, parts.netloc) not in mine:
        return f"Origin {origin!r} does not match the Host {request.headers.get('Host')!r}"
    return None


def _allowed_hosts() -> set[str]:
    """``COMFYPACK_ALLOWED_HOSTS``: more names this ComfyUI answers to (comma-separated host
    names or addresses, no ports; ``*``: any — only behind a proxy that checks Host itself)."""
    return {
        h.strip().lower().strip("[]")
        for h in os.environ.get("COMFYPACK_ALLOWED_HOSTS", "").split(",")
        if h.strip()
    }


def untrusted_host(request: web.Request) -> str | None:
    """Why the request's ``Host`` is not a name of this ComfyUI, or None. Trusted: ``localhost``
    and ``*.localhost``, loopback addresses, the address the connection came in on, and
    ``COMFYPACK_ALLOWED_HOSTS``."""
    raw = request.headers.get("Host")
    if raw is None:
        return None  # HTTP/1.0 without Host: the socket is all there is
    try:
        name = (urlsplit(f"//{raw}").hostname or "") if _HOST.match(raw) else ""
    except ValueError:
        name = ""
    if not name:
        return f"Host {raw[:100]!r} is not a host name"
    if name == "localhost" or name.endswith(".localhost") or _is_loopback(name):
        return None
    allowed = _allowed_hosts()
    if name in allowed or "*" in allowed:
        return None
    try:
        if ipaddress.ip_address(name) == ipaddress.ip_address(_own_address(request)[1]):
            return None  # the address this connection reached
    except (ValueError, ImportError, AttributeError):
        pass
    return (
        f"Host {raw[:100]!r} is not one of this ComfyUI's names; reach it by its address or "
        "localhost, or add the name to COMFYPACK_ALLOWED_HOSTS"
    )


def guarded(
    *, json_body: bool
) -> Callable[[Handler], Callable[[ComfyPackRoutes, web.Request], Awaitable[web.StreamResponse]]]:
    """Same-origin only; for POSTs an ``application/json`` object body; errors as JSON."""

    def decorate(
        handler: Handler,
    ) -> Callable[[ComfyPackRoutes, web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def wrapper(self: ComfyPackRoutes, request: web.Request) -> web.StreamResponse:
            why = cross_origin(request) or untrusted_host(request)
            if why is not None:
                logger.warning(
                    "comfypack: refused a cross-origin %s %s (%s)",
                    request.method,
                    request.path,
                    why,
                )
                return _error(
                    403, "forbidden", f"comfypack's routes answer same-origin requests only ({why})"
                )
            body: Any = None
            if json_body:
                if request.content_type != "application/json":
                    return _error(
                        415,
                        "unsupported_media_type",
                        f"send a JSON body (Content-Type: application/json), not {request.content_type!r}",
                    )
                try:
                    body = await request.json()
                except ValueError as e:
                    return _error(400, "bad_request", f"the body is not valid JSON ({e})")
                if not isinstance(body, dict):
                    return _error(400, "bad_request", "the body must be a JSON object")
            try:
                return await handler(self, request, body)
            except Exception as e:  # noqa: BLE001 - every failure becomes a JSON error
                status, err = describe_exception(e)
                return web.json_response(err, status=status)

        return wrapper

    return decorate


def _own_address(request: web.Request) -> tuple[str, str, int]:
    """``(scheme, host, port)`` this ComfyUI was reached on (its socket, not the Host header)."""
    transport = request.transport
    sock = transport.get_extra_info("sockname") if transport is not None else None
    scheme = "https" if transport is not None and transport.get_extra_info("sslcontext") else "http"
    if isinstance(sock, tuple) and len(sock) >= 2:
        host = str(sock[0])
        host = host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host
        return scheme, host, int(sock[1])
    from comfy.cli_args import args  # not reached over TCP: ComfyUI's own flags

    listen = str(args.listen).split(",")[0]
    return scheme, "127.0.0.1" if listen in ("0.0.0.0", "::", "") else listen, int(args.port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ComfyPackRoutes:
    def __init__(self, input_dir: str, output_dir: str, comfyui_dir: str | None = None) -> None:
        self.input_dir = input_dir
        self.output_dir = output_dir
        self._comfyui_dir = comfyui_dir
        self.jobs = Jobs()
        self.downloads = Downloads()
        self._base: Path | None = None
        self._services: Services | None = None

    # -- state made on first use (nothing at import) --------------------------------------------

    @property
    def base_dir(self) -> Path:
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="comfypack-ui-"))
            atexit.register(shutil.rmtree, self._base, True)
        return self._base

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services(self.base_dir)
        return self._services

    @property
    def comfyui_dir(self) -> Path:
        if self._comfyui_dir is None:
            import folder_paths

            self._comfyui_dir = os.path.dirname(os.path.abspath(folder_paths.__file__))
        return Path(self._comfyui_dir)

    def add_routes(self, routes: web.RouteTableDef) -> None:
        routes.delete("/comfypack/runs/{run_id}")(self.delete_run)
        routes.get("/comfypack/capabilities")(self.capabilities)
        routes.post("/comfypack/interface")(self.interface)
        routes.post("/comfypack/lock")(self.lock)
        routes.post("/comfypack/pack")(self.pack)
        routes.get("/comfypack/jobs/{job_id}")(self.job)
        routes.get("/comfypack/download/{download_id}")(self.download)
        routes.post("/comfypack/serve")(self.serve_start)
        routes.get("/comfypack/serve")(self.serve_list)
        routes.get("/comfypack/serve/{service_id}")(self.serve_status)
        routes.delete("/comfypack/serve/{service_id}")(self.serve_stop)
        routes.post("/comfypack/build")(self.build)
        routes.post("/comfypack/deploy")(self.deploy)

    # -- helpers --------------------------------------------------------------------------------

    def _comfyui_url(self, request: web.Request) -> str:
        scheme, host, port = _own_address(request)
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    async def _workflow(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request's API-format workflow and its interface document (400 if broken)."""
        _work.require_comfypack()
        api = await asyncio.to_thread(
            _work.load_api, body.get("workflow"), self._comfyui_url(request)
        )
        doc = await asyncio.to_thread(_work.interface, api)
        return api, doc

    @staticmethod
    def _ui_workflow(body: dict[str, Any]) -> dict[str, Any] | None:
        ui = body.get("ui_workflow")
        if ui is not None and not isinstance(ui, dict):
            raise JobFailed(
                400, "bad_request", "`ui_workflow` must be a JSON object (the UI graph) or absent"
            )
        return ui

    def _job_response(self, job: Any, extra: dict[str, Any] | None = None) -> web.Response:
        return web.json_response(
            {
                "job_id": job.id,
                "status_url": f"/comfypack/jobs/{job.id}",
                **(extra or {}),
                "job": job.to_dict(),
            },
            status=202,
        )

    def _pack_args(self, body: dict[str, Any], job_id: str) -> dict[str, Any]:
        work_dir = self.base_dir / "jobs" / job_id
        work_dir.mkdir(parents=True, exist_ok=True)
        return {
            "work_dir": work_dir,
            "comfyui_dir": self.comfyui_dir,
            "input_dir": Path(self.input_dir),
            "offline": bool(body.get("offline", False)),
        }

    # -- interface, lock, pack ------------------------------------------------------------------

    @guarded(json_body=True)
    async def interface(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        _, doc = await self._workflow(request, body)
        return web.json_response(doc)

    @guarded(json_body=True)
    async def lock(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        api, _ = await self._workflow(request, body)
        _ = self.base_dir  # made here, on the loop, before any job thread wants it

        def work(job: Any) -> Any:
            args = self._pack_args(body, job.id)
            args.pop("input_dir")
            return _work.lock_job(job, api, downloads=self.downloads, **args)

        job = self.jobs.start("lock", _work.PACK_STAGES[:3], work)
        return self._job_response(job)

    @guarded(json_body=True)
    async def pack(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        api, doc = await self._workflow(request, body)
        ui = self._ui_workflow(body)
        name = _work.slug(body.get("name"))
        _ = self.base_dir

        def work(job: Any) -> Any:
            return _work.pack_job(
                job, api, ui, name, downloads=self.downloads, **self._pack_args(body, job.id)
            )

        job = self.jobs.start("pack", list(_work.PACK_STAGES), work)
        return self._job_response(job, {"interface": doc})

    @guarded(json_body=False)
    async def job(self, request: web.Request, body: None) -> web.Response:
        job_id = request.match_info["job_id"]
        if not _JOB_ID.match(job_id):
            return _error(400, "bad_request", "a job id is 32 lowercase hex digits")
        job = self.jobs.get(job_id)
        if job is None:
            return _error(
                404, "not_found", f"no job {job_id} (jobs live as long as this ComfyUI runs)"
            )
        return web.json_response(job.to_dict())

    @guarded(json_body=False)
    async def download(self, request: web.Request, body: None) -> web.StreamResponse:
        download_id = request.match_info["download_id"]
        if not _DOWNLOAD_ID.match(download_id):
            return _error(
                400,
                "bad_request",
                "not a download id (downloads are by the opaque id a job returned)",
            )
        entry = self.downloads.get(download_id)
        if entry is None or not os.path.isfile(entry[0]):
            return _error(404, "not_found", "no such download (it may have expired; pack again)")
        path, filename = entry
        kind = "application/zip" if filename.endswith(".zip") else "application/json"
        return web.FileResponse(
            path,
            headers={
                "Content-Type": kind,
                "Content-Disposition": f'attachment; filename="{filename}"',
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    # -- serve ----------------------------------------------------------------------------------

    @guarded(json_body=True)
    async def serve_start(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        if os.name != "posix":
            return _error(
                501,
                "not_available",
                "Serve from the canvas needs Linux or macOS (it manages the "
                "service's process group); run `comfypack serve WORKFLOW` in a terminal instead",
            )
        api, doc = await self._workflow(request, body)
        name = _work.slug(body.get("name"))
        sha = doc["workflow_sha256"]
        service_id = sha[:16]
        if body.get("replace", True):  # this workflow changed since it was served: replace that one
            for other in self.services.running():
                if (
                    other.name == name
                    and other.id != service_id
                    and other.state in ("starting", "ready")
                ):
                    await self.services.stop(other.id)
        # checked after the last await: from here to start() nothing else runs on the loop
        existing = self.services.get(service_id)
        if (
            existing is not None
            and existing.state in ("starting", "ready")
            and existing.proc.poll() is None
        ):
            return web.json_response({**existing.to_dict(), "reused": True, "interface": doc})
        running = self.services.running()
        if len(running) >= self.services.max_services:
            return _error(
                409,
                "too_many_services",
                f"{len(running)} comfypack services already run from this ComfyUI "
                f"({', '.join(s.name for s in running)}); stop one first",
                [s.to_dict(log_lines=0) for s in running],
            )
        if existing is not None:
            self.services.forget(service_id)
        _, own_host, _ = _own_address(request)
        host = "127.0.0.1" if _is_loopback(own_host) else own_host
        public = urlsplit(f"//{request.host}").hostname if _HOST.match(request.host or "") else None
        endpoint = str(body.get("endpoint") or "generate").strip("/")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_/-]{0,63}", endpoint):
            return _error(400, "bad_request", "`endpoint` must be a simple route such as generate")
        service = self.services.start(
            service_id=service_id,
            name=name,
            workflow_sha256=sha,
            endpoint=endpoint,
            workflow_json=_dump(api),
            comfyui_url=self._comfyui_url(request),
            host=host,
            public_host=public or host,
        )
        return web.json_response(
            {**service.to_dict(), "reused": False, "interface": doc}, status=202
        )

    @guarded(json_body=False)
    async def serve_list(self, request: web.Request, body: None) -> web.Response:
        return web.json_response(
            {"services": [s.to_dict(log_lines=0) for s in self.services.all()]}
        )

    def _service(self, request: web.Request) -> Any:
        service_id = request.match_info["service_id"]
        if not _SERVICE_ID.match(service_id):
            raise JobFailed(400, "bad_request", "a service id is 16 lowercase hex digits")
        service = self.services.get(service_id)
        if service is None:
            raise JobFailed(404, "not_found", f"no service {service_id}")
        return service

    @guarded(json_body=False)
    async def serve_status(self, request: web.Request, body: None) -> web.Response:
        lines = request.query.get("log_lines", "40")
        return web.json_response(
            self._service(request).to_dict(log_lines=int(lines) if lines.isdigit() else 40)
        )

    @guarded(json_body=False)
    async def serve_stop(self, request: web.Request, body: None) -> web.Response:
        service = self._service(request)
        return web.json_response(await self.services.stop(service.id))

    # -- build / deploy -------------------------------------------------------------------------

    @guarded(json_body=False)
    async def capabilities(self, request: web.Request, body: None) -> web.Response:
        import importlib.metadata

        try:
            version: str | None = importlib.metadata.version("comfypack")
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version is None:
            return web.json_response(
                {"comfypack": None, "build": False, "deploy": False, "bentocloud": None}
            )
        build, deploy, cloud = await asyncio.gather(
            asyncio.to_thread(_work.cli_has, "build"),
            asyncio.to_thread(_work.cli_has, "deploy"),
            asyncio.to_thread(_work.bentocloud_context),
        )
        return web.json_response(
            {"comfypack": version, "build": build, "deploy": deploy, "bentocloud": cloud}
        )

    async def _require_cli(self, command: str) -> list[str]:
        """The command's options (``comfypack version --json``); 501 when this comfypack has no
        such command."""
        usage = await asyncio.to_thread(_work.cli_options, command)
        if usage is None:
            raise JobFailed(
                501,
                "not_available",
                f"`comfypack {command}` is not available in this version of comfypack; "
                "upgrade comfypack in ComfyUI's Python to build or deploy from the canvas "
                "(Pack works: build the downloaded .cpack.zip elsewhere)",
            )
        return usage

    @guarded(json_body=True)
    async def build(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        api, _ = await self._workflow(request, body)
        usage = await self._require_cli("build")
        return self._cli_job(body, api, "build", ["--json"] if "--json" in usage else [])

    @guarded(json_body=True)
    async def deploy(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """Deploy to BentoCloud; ``dry_run`` only shows the deployment it would make (no build,
        no network, so no login needed)."""
        api, _ = await self._workflow(request, body)
        target = body.get("target", "bentocloud")
        if target != "bentocloud":
            return _error(
                400,
                "bad_request",
                "the canvas deploys to target 'bentocloud' only; use the "
                "`comfypack deploy` CLI for other targets",
            )
        usage = await self._require_cli("deploy")
        dry_run = bool(body.get("dry_run"))
        if not dry_run:
            cloud = await asyncio.to_thread(_work.bentocloud_context)
            if not cloud["logged_in"]:
                return _error(
                    412,
                    "bentocloud_login_required",
                    "not logged in to BentoCloud on the machine that runs ComfyUI: run `bentoml "
                    "cloud login` in a terminal there, then Deploy again (comfypack never takes "
                    "API keys in the browser)",
                    cloud,
                )
        extra = ["--target", "bentocloud"] + (["--json"] if "--json" in usage else [])
        if dry_run:
            extra += ["--dry-run"]
        return self._cli_job(body, api, "deploy", extra, dry_run=dry_run)

    def _cli_job(
        self,
        body: dict[str, Any],
        api: dict[str, Any],
        command: str,
        extra: list[str],
        *,
        dry_run: bool = False,
    ) -> web.Response:
        ui = self._ui_workflow(body)
        name = _work.slug(body.get("name"))
        stage = {
            "build": "building the Bento",
            "deploy": "previewing the deployment" if dry_run else "deploying to BentoCloud",
        }[command]
        _ = self.base_dir

        def work(job: Any) -> Any:
            pack, _ = _work.make_pack(job, api, ui, name, **self._pack_args(body, job.id))
            return _work.run_cli_job(job, [command, str(pack), *extra], stage)

        return self._job_response(self.jobs.start(command, [*_work.PACK_STAGES, stage], work))

    # -- runs -----------------------------------------------------------------------------------

    @guarded(json_body=False)
    async def delete_run(self, request: web.Request, body: None) -> web.Response:
        run_id = request.match_info["run_id"]
        if not _RUN_ID.match(run_id):
            return _error(400, "bad_request", "run_id must be a canonical UUID string")
        removed = 0
        for base in (self.input_dir, self.output_dir):
            folder = os.path.join(base, "comfypack")
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith(run_id + "_"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(folder, name))
                            removed += 1
        return web.json_response({"run_id": run_id, "removed": removed})


def _dump(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

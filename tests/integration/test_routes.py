"""comfypack's routes on a real ComfyUI (``custom_nodes/comfypack_nodes/routes.py``), over HTTP.

Interface preview (ok, UI format, errors naming fields and nodes), the safety rules (cross-origin
403, JSON only 415, downloads by opaque id only), lock and pack jobs with their progress and
downloads, one service per workflow with a stop that leaves no process behind, and build /
deploy answering clearly when they cannot run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES, group_members

from comfypack.comfyui.source import comfyui_version
from comfypack.config import comfypack_home

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TEXT_TOOLS = EXAMPLES / "text_tools"
TEXT_INPUTS = ["text", "suffix", "case", "needle", "case_sensitive"]


def _api() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TEXT_TOOLS / "workflow_api.json").read_text())
    return data


@pytest.fixture(scope="module")
def http(comfyui: Any) -> Any:
    with httpx.Client(base_url=comfyui.url, timeout=60) as client:
        yield client


def _wait_job(http: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        r = http.get(f"/comfypack/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["stage"] not in seen:
            seen.append(job["stage"])
        assert 0.0 <= job["progress"] <= 1.0
        if job["state"] in ("done", "failed"):
            job["seen_stages"] = seen
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.2)


def _live_services(http: httpx.Client) -> list[dict[str, Any]]:
    return [s for s in http.get("/comfypack/serve").json()["services"] if s["state"] != "stopped"]


# -- interface ---------------------------------------------------------------------------------


def test_interface_of_an_api_workflow(http: httpx.Client) -> None:
    from comfypack.lock.create import workflow_sha256

    r = http.post("/comfypack/interface", json={"workflow": _api()})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [i["name"] for i in doc["inputs"]] == TEXT_INPUTS
    assert [o["name"] for o in doc["outputs"]] == ["text", "length", "contains"]
    case = doc["input_schema"]["properties"]["case"]
    assert (
        case["enum"] == ["UPPERCASE", "lowercase", "Capitalize", "Title Case"]
        and case["default"] == "UPPERCASE"
    )
    assert doc["input_schema"]["properties"]["suffix"]["maxLength"] == 64
    assert doc["workflow_sha256"] == workflow_sha256(_api())
    assert doc["example_request"]["case"] == "UPPERCASE"
    # the same through ComfyUI's /api prefix (what the frontend's api.fetchApi calls)
    assert http.post("/api/comfypack/interface", json={"workflow": _api()}).json() == doc


def test_interface_of_a_ui_workflow_is_converted(http: httpx.Client) -> None:
    ui = json.loads((TEXT_TOOLS / "workflow.json").read_text())
    r = http.post("/comfypack/interface", json={"workflow": ui})
    assert r.status_code == 200, r.text
    assert [i["name"] for i in r.json()["inputs"]] == TEXT_INPUTS


def test_interface_errors_name_the_fields_and_nodes(http: httpx.Client) -> None:
    wf = _api()
    wf["2"]["inputs"]["name"] = "text"  # duplicate of node 1's input name
    wf["4"]["inputs"]["name"] = "class"  # a Python keyword
    r = http.post("/comfypack/interface", json={"workflow": wf})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "workflow_error"
    by_field = {d["field"]: d for d in err["details"]}
    assert "already used" in by_field["text"]["message"]
    assert by_field["text"]["nodes"] == ["1", "2"]  # not output node 10, also named "text"
    assert by_field["class"]["nodes"] == ["4"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "`workflow` must be"),
        ({"workflow": [1, 2]}, "`workflow` must be"),
        ({"workflow": {"1": {"inputs": {}}}}, "class_type"),
    ],
)
def test_interface_of_a_broken_body_is_a_400(
    http: httpx.Client, body: dict[str, Any], fragment: str
) -> None:
    r = http.post("/comfypack/interface", json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


# -- safety ------------------------------------------------------------------------------------


def _refused(r: httpx.Response, comfyui: Any, mention: str = "") -> None:
    """A 403: comfypack's JSON refusal, or — on ComfyUI 0.2x, which checks Sec-Fetch-Site and a
    Host/Origin mismatch itself before any route runs — ComfyUI's own plain-text one."""
    assert r.status_code == 403
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["error"]["type"] == "forbidden" and mention in r.json()["error"]["message"]
    else:
        assert comfyui_version(comfyui.comfyui_dir) != "0.3.75", r.text


def test_cross_origin_posts_are_refused(http: httpx.Client, comfyui: Any) -> None:
    body = {"workflow": _api()}
    # a browser says where the request comes from: Sec-Fetch-Site (ComfyUI itself does not look)
    r = http.post("/comfypack/interface", json=body, headers={"Sec-Fetch-Site": "cross-site"})
    _refused(r, comfyui)
    assert (
        http.post("/comfypack/pack", json=body, headers={"Sec-Fetch-Site": "same-site"}).status_code
        == 403
    )
    # an Origin that is not this host: refused by comfypack even where ComfyUI's own loopback-only
    # check does not apply (a ComfyUI reached by a LAN name)
    r = http.post(
        "/comfypack/serve",
        json=body,
        headers={"Origin": "http://evil.example", "Host": "comfy.lan:8188"},
    )
    _refused(r, comfyui, "evil.example")
    r = http.post(
        "/comfypack/interface", json=body, headers={"Origin": "null", "Host": "comfy.lan:8188"}
    )
    assert r.status_code == 403
    # ... and on loopback (whoever answers first, it is a 403)
    assert (
        http.post(
            "/comfypack/serve", json=body, headers={"Origin": "http://evil.example"}
        ).status_code
        == 403
    )
    assert (
        http.delete(
            "/comfypack/serve/0123456789abcdef", headers={"Sec-Fetch-Site": "cross-site"}
        ).status_code
        == 403
    )
    # no service was started by any of those
    assert _live_services(http) == []
    # the same request from the page itself is fine
    host = comfyui.url.removeprefix("http://")
    r = http.post(
        "/comfypack/interface",
        json=body,
        headers={"Origin": comfyui.url, "Host": host, "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200, r.text


def test_dns_rebinding_is_refused_by_host(http: httpx.Client, comfyui: Any) -> None:
    """A page on evil.example whose name was rebound to this machine: its requests are
    same-origin (Origin matches Host), but the Host is not one of this ComfyUI's names."""
    port = comfyui.url.rsplit(":", 1)[1]
    evil = {
        "Host": f"evil.example:{port}",
        "Origin": f"http://evil.example:{port}",
        "Sec-Fetch-Site": "same-origin",
    }
    body = {"workflow": _api()}
    for method, path, kw in [
        ("POST", "/comfypack/serve", {"json": body}),
        ("POST", "/comfypack/pack", {"json": body}),
        ("POST", "/comfypack/interface", {"json": body}),
        ("GET", "/comfypack/serve", {}),
        ("DELETE", "/comfypack/serve/0123456789abcdef", {}),
        ("POST", "/comfypack/build", {"json": body}),
    ]:
        r = http.request(method, path, headers=evil, **kw)
        _refused(r, comfyui, "evil.example")
    assert _live_services(http) == []
    # the same requests by this ComfyUI's own names are answered
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        r = http.post(
            "/comfypack/interface",
            json=body,
            headers={"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"},
        )
        assert r.status_code == 200, (host, r.text)


def test_only_json_bodies_are_taken(http: httpx.Client) -> None:
    text = json.dumps({"workflow": _api()})
    r = http.post("/comfypack/interface", content=text, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type"
    assert http.post("/comfypack/pack", data={"workflow": "x"}).status_code == 415
    assert http.post("/comfypack/serve", content=text).status_code == 415  # no Content-Type at all
    r = http.post(
        "/comfypack/interface", content="{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = http.post("/comfypack/interface", json=[1, 2, 3])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "download_id, status",
    [
        ("A" * 32, 404),  # well formed, unknown
        ("nope", 400),
        ("..%2F..%2F..%2Fetc%2Fpasswd", 400),
        ("%2Fetc%2Fpasswd", 400),
        ("..", 404),  # resolved by the URL layer to /comfypack/: no route
        ("text_tools.cpack.zip", 400),
    ],
)
def test_downloads_are_by_opaque_id_only(http: httpx.Client, download_id: str, status: int) -> None:
    r = http.get(f"/comfypack/download/{download_id}")
    assert r.status_code == status, r.text
    assert b"root:" not in r.content
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["error"]["type"] in ("not_found", "bad_request")


def test_unknown_jobs_and_services(http: httpx.Client) -> None:
    assert http.get(f"/comfypack/jobs/{'0' * 32}").status_code == 404
    assert http.get("/comfypack/jobs/..%2Fx").status_code == 400
    assert http.get("/comfypack/serve/0123456789abcdef").status_code == 404
    assert http.delete("/comfypack/serve/0123456789abcdef").status_code == 404
    assert http.get("/comfypack/serve/not-an-id").status_code == 400


# -- lock and pack -----------------------------------------------------------------------------


def test_lock_job_reports_progress_and_gives_the_lock(http: httpx.Client) -> None:
    from comfypack.lock.create import workflow_sha256
    from comfypack.lockfile import loads

    r = http.post("/comfypack/lock", json={"workflow": _api()})
    assert r.status_code == 202, r.text
    job = _wait_job(http, r.json()["job_id"])
    assert job["state"] == "done", job
    assert job["progress"] == 1.0 and job["stages"][-1] == "locking the environment"
    result = job["result"]
    lock = loads(http.get(result["download_url"]).text)
    assert lock.workflow.sha256 == result["lock"]["workflow"]["sha256"] == workflow_sha256(_api())
    assert result["summary"]["models"] == 0 and result["summary"]["packages"] > 10


def test_pack_job_gives_a_pack_by_opaque_id(http: httpx.Client, tmp_path: Path) -> None:
    from comfypack.pack.restore import read_pack

    ui = json.loads((TEXT_TOOLS / "workflow.json").read_text())
    r = http.post(
        "/comfypack/pack",
        json={"workflow": _api(), "ui_workflow": ui, "name": "../../Text tools.json"},
    )
    assert r.status_code == 202, r.text
    assert [i["name"] for i in r.json()["interface"]["inputs"]] == TEXT_INPUTS
    job = _wait_job(http, r.json()["job_id"])
    assert job["state"] == "done", job
    result = job["result"]
    assert result["filename"] == "Text_tools.cpack.zip"  # a name, never a path
    assert (
        "/" not in result["download_id"]
        and result["download_url"] == f"/comfypack/download/{result['download_id']}"
    )
    r = http.get(result["download_url"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert 'filename="Text_tools.cpack.zip"' in r.headers["content-disposition"]
    pack = tmp_path / result["filename"]
    pack.write_bytes(r.content)
    contents = read_pack(pack)
    assert contents.workflow == _api()
    assert contents.ui_workflow is not None


# -- serve -------------------------------------------------------------------------------------


def test_one_service_per_workflow_and_a_clean_stop(http: httpx.Client) -> None:
    body = {"workflow": _api(), "name": "text_tools"}
    r = http.post("/comfypack/serve", json=body)
    assert r.status_code == 202, r.text
    svc = r.json()
    try:
        assert svc["reused"] is False and svc["port"] > 0
        assert svc["docs_url"] == f"http://127.0.0.1:{svc['port']}/docs"
        again = http.post("/comfypack/serve", json=body)
        assert (
            again.status_code == 200
            and again.json()["reused"] is True
            and again.json()["id"] == svc["id"]
        )
        deadline = time.monotonic() + 120
        stages = []
        while True:
            status = http.get(f"/comfypack/serve/{svc['id']}").json()
            stages.append(status["stage"])
            if status["state"] != "starting":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert status["state"] == "ready", status
        assert any("comfypack.service" in line or "BentoServer" in line for line in status["log"])
        # its state lives in the canvas's own folder for it, not in the CLI's default
        # $COMFYPACK_HOME/services/<host>-<port> (which another service could share)
        assert not (comfypack_home() / "services" / f"127.0.0.1-{svc['port']}").exists()
        out = httpx.post(
            status["endpoint_url"],
            json={"text": "abc", "suffix": "", "case": "UPPERCASE", "needle": "B"},
            timeout=60,
        )
        assert out.status_code == 200, out.text
        assert out.json() == {"text": "ABC", "length": 3, "contains": True}
        bad = httpx.post(status["endpoint_url"], json={"case": "shouting"}, timeout=60)
        assert bad.status_code == 422 and "case" in bad.text
    finally:
        stopped = http.delete(f"/comfypack/serve/{svc['id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped" and stopped.json()["left"] == []
    assert group_members(svc["pid"]) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{svc['port']}/livez", timeout=2)
    assert http.get(f"/comfypack/serve/{svc['id']}").json()["state"] == "stopped"


def test_serve_refuses_a_broken_interface_before_starting(http: httpx.Client) -> None:
    wf = _api()
    wf["2"]["inputs"]["name"] = "text"
    r = http.post("/comfypack/serve", json={"workflow": wf})
    assert r.status_code == 400 and r.json()["error"]["details"][0]["nodes"] == ["1", "2"]
    assert _live_services(http) == []


# -- build / deploy ----------------------------------------------------------------------------


def _cli_has(command: str) -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "comfypack.cli", command, "--help"], capture_output=True
    )
    return proc.returncode == 0


def test_build_and_deploy_answer_clearly(http: httpx.Client) -> None:
    caps = http.get("/comfypack/capabilities").json()
    assert (
        caps["comfypack"]
        and caps["build"] == _cli_has("build")
        and caps["deploy"] == _cli_has("deploy")
    )
    body = {"workflow": _api(), "name": "text_tools"}
    if not caps["build"]:
        r = http.post("/comfypack/build", json=body)
        assert r.status_code == 501, r.text
        assert (
            r.json()["error"]["type"] == "not_available"
            and "comfypack build" in r.json()["error"]["message"]
        )
    # (a real build through the route is left out: it would write into the user's Bento store)
    r = http.post("/comfypack/deploy", json={**body, "target": "kubernetes"})
    assert r.status_code == 400
    if not caps["deploy"]:
        r = http.post("/comfypack/deploy", json=body)
        assert r.status_code == 501 and "comfypack deploy" in r.json()["error"]["message"]
        return
    if not caps["bentocloud"]["logged_in"]:
        r = http.post("/comfypack/deploy", json=body)
        assert r.status_code == 412, r.text
        assert "bentoml cloud login" in r.json()["error"]["message"]
    # a dry run needs no login: pack, then `comfypack deploy --dry-run` shows the deployment
    r = http.post("/comfypack/deploy", json={**body, "dry_run": True})
    assert r.status_code == 202, r.text
    job = _wait_job(http, r.json()["job_id"])
    assert job["state"] == "done", job
    assert job["stages"][-1] == "previewing the deployment"
    assert job["result"]["bento"].startswith("text_tools:")


def test_runs_route_still_cleans_up(http: httpx.Client) -> None:
    run_id = "0b9c4d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
    assert http.delete(f"/comfypack/runs/{run_id}").json() == {"run_id": run_id, "removed": 0}
    assert http.delete("/comfypack/runs/nope").status_code == 400
    assert http.delete(f"/comfypack/runs/{'a' * 32}").status_code == 400  # ids are canonical UUIDs

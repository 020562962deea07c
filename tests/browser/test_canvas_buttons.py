"""Serve, Pack and Deploy from ComfyUI's canvas, in the real frontend (headless Chromium).

The session's ComfyUI (with comfypack's node package: routes + ``web/comfypack.js``) is opened
in Chromium; the text_tools example (UI format, as ComfyUI's Save writes it) is loaded into the
canvas, and the top bar's comfypack buttons are clicked like a user would:

- **Serve** opens the API panel (fields, types, defaults, bounds, a curl line), follows the
  service's start with the server's real progress, and ends with a port that answers a typed
  request; **Stop service** (``DELETE /comfypack/serve/{id}``) leaves no process behind;
- a duplicated input name makes Serve show the error, naming the nodes, in the panel;
- **Pack** downloads a ``.cpack.zip`` that :func:`comfypack.pack.restore.read_pack` accepts and that
  holds exactly the canvas's workflow;
- **Deploy** says what this installation can do (build / BentoCloud login) and previews the
  deployment (a dry run);
- the setting hides the buttons;
- the panel stays above the frontend's dialogs and toasts.

Every test runs on the frontend the ComfyUI under test pins and, on the current ComfyUI line, on
the newest frontend package too (``make setup`` unpacks it); the dialogs a frontend opens at start
(1.58's first-run template browser covers the canvas) are closed as a user would, with Escape.
Screenshots go to ``test-artifacts/canvas/<frontend>/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _frontend import (
    DIALOGS,
    PANEL,
    Frontend,
    comfyui_with_frontend,
    frontend_variants,
    load_into_tab,
    require_chromium,
    wait_panel,
)
from conftest import EXAMPLES, ROOT, group_members

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ARTIFACTS = ROOT / "test-artifacts" / "canvas"
TEXT_TOOLS = EXAMPLES / "text_tools"

_RENAME = """([title, value]) => {
    const node = window.app.graph.nodes.find((n) => n.title === title);
    node.widgets.find((w) => w.name === 'name').value = value;
    window.app.graph.setDirtyCanvas(true, true);
}"""


@pytest.fixture(scope="module", params=frontend_variants())
def served(request: pytest.FixtureRequest, comfyui: Any) -> Iterator[str]:
    """The URL of a ComfyUI that serves the frontend under test."""
    with comfyui_with_frontend(request.param, comfyui) as url:
        yield url


@pytest.fixture(scope="module")
def frontend(served: str) -> Iterator[Frontend]:
    require_chromium()
    with Frontend(served) as fe:
        fe.page.wait_for_selector("button.comfypack-serve", state="visible", timeout=30_000)
        fe.dismiss_dialogs(settle_ms=500)  # one that opened late
        yield fe


@pytest.fixture(scope="module")
def http(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, timeout=60) as client:
        yield client


def _load(fe: Frontend, name: str) -> dict[str, Any]:
    """Load the example into a new workflow tab called ``name`` (unique: a taken name gets " (2)")."""
    return load_into_tab(fe, json.loads((TEXT_TOOLS / "workflow.json").read_text()), name)


def _shot(fe: Frontend, name: str) -> None:
    fe.page.wait_for_timeout(300)  # let the progress bar's transition end
    fe.screenshot(ARTIFACTS / fe.version() / f"{name}.png")


def test_serve_shows_the_typed_api_and_the_service_answers(
    frontend: Frontend, http: httpx.Client
) -> None:
    page = frontend.page
    _load(frontend, "text_tools")
    _shot(frontend, "01_loaded")
    page.locator("button.comfypack-serve").click()

    # real progress from the server while the service starts
    page.wait_for_selector(f"{PANEL} tr[data-field]", timeout=30_000)
    stages_seen: set[str] = set()
    shot = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = page.locator(PANEL).get_attribute("data-state")
        stages_seen.add(page.locator(f"{PANEL} .cp-status-text").inner_text())
        if state != "working":
            break
        if len(stages_seen) >= 2 and not shot:
            shot = True
            _shot(frontend, "02_serve_starting")
        page.wait_for_timeout(150)
    panel = page.locator(PANEL)
    assert panel.get_attribute("data-state") == "ready", panel.inner_text()
    service_id = panel.get_attribute("data-service-id")
    port = int(panel.get_attribute("data-port") or 0)
    assert service_id and port
    try:
        assert any("/4 " in s for s in stages_seen), (
            stages_seen
        )  # "2/4 starting the HTTP server · 1 s"

        # the typed API: fields, types, defaults, bounds / options
        rows = {
            r.get_attribute("data-field"): r.locator("td").all_inner_texts()
            for r in panel.locator("tr[data-field]").all()
        }
        assert list(rows) == ["text", "suffix", "case", "needle", "case_sensitive"]
        assert rows["case"][1] == "choice" and rows["case"][2] == '"UPPERCASE"'
        assert "Title Case" in rows["case"][3]
        assert rows["suffix"][3] == "≤ 64 chars"
        assert rows["case_sensitive"][1:3] == ["boolean", "false"]
        assert panel.locator("tr[data-output]").count() == 3
        curl = panel.locator(".cp-curl").inner_text()
        assert f"http://127.0.0.1:{port}/generate" in curl and '"case":"UPPERCASE"' in curl
        assert panel.locator("a.cp-docs").get_attribute("href") == f"http://127.0.0.1:{port}/docs"
        _shot(frontend, "03_serve_ready")

        # the served endpoint answers a typed request ...
        request = json.loads((TEXT_TOOLS / "request.json").read_text())
        r = httpx.post(f"http://127.0.0.1:{port}/generate", json=request, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() == {"text": "Hello Comfypack", "length": 15, "contains": True}
        # ... and refuses a mistyped one, naming the field
        r = httpx.post(
            f"http://127.0.0.1:{port}/generate", json={"case_sensitive": "maybe"}, timeout=60
        )
        assert r.status_code == 422 and "case_sensitive" in r.text
        assert (
            httpx.get(
                f"http://127.0.0.1:{port}/docs", timeout=30, follow_redirects=True
            ).status_code
            == 200
        )

        pid = http.get(f"/comfypack/serve/{service_id}").json()["pid"]
        assert group_members(pid)
        # Stop service: DELETE /comfypack/serve/{id}
        panel.locator("button.cp-stop").click()
        wait_panel(frontend, "done|error", 30_000)
        assert "Stopped" in panel.locator(".cp-status-text").inner_text()
        _shot(frontend, "04_serve_stopped")
    finally:
        http.delete(f"/comfypack/serve/{service_id}")  # whatever happened above
    status = http.get(f"/comfypack/serve/{service_id}").json()
    assert status["state"] == "stopped"
    assert group_members(pid) == [], "the stopped service left processes behind"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)


def test_serve_shows_interface_errors_in_the_panel(frontend: Frontend, http: httpx.Client) -> None:
    page = frontend.page
    _load(frontend, "duplicate_names")
    page.evaluate(_RENAME, ["Suffix", "text"])
    page.locator("button.comfypack-serve").click()
    assert wait_panel(frontend, "error|ready", 30_000) == "error"
    error = page.locator(f"{PANEL} .cp-error").inner_text()
    assert "'text' is already used" in error
    _shot(frontend, "05_serve_error")
    assert [
        s for s in http.get("/comfypack/serve").json()["services"] if s["state"] != "stopped"
    ] == []


def test_pack_downloads_a_cpack_zip(frontend: Frontend, tmp_path: Path) -> None:
    from comfypack.pack.restore import read_pack
    from comfypack.workflow.interface import parse_interface

    page = frontend.page
    api = _load(frontend, "my_text_tools")
    with page.expect_download(timeout=120_000) as download:
        page.locator("button.comfypack-pack").click()
    pack = tmp_path / download.value.suggested_filename
    download.value.save_as(pack)
    assert pack.name == "my_text_tools.cpack.zip"  # named after the workflow's tab
    assert wait_panel(frontend, "done|error") == "done"
    assert "Packed my_text_tools.cpack.zip" in page.locator(f"{PANEL} .cp-status-text").inner_text()
    _shot(frontend, "06_pack_done")

    contents = read_pack(pack)  # validates every entry, the lock and the workflow's hash
    assert contents.workflow == api  # exactly what the canvas exports
    assert contents.ui_workflow is not None and json.loads(contents.ui_workflow)["nodes"]
    assert contents.interface is not None
    assert [s.name for s in parse_interface(contents.workflow).inputs] == [
        "text",
        "suffix",
        "case",
        "needle",
        "case_sensitive",
    ]
    # and the CLI takes it as it is
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "comfypack.cli", "inspect", "--json", str(pack)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert list(json.loads(out.stdout)["input_schema"]["properties"]) == [
        "text",
        "suffix",
        "case",
        "needle",
        "case_sensitive",
    ]


def test_deploy_says_what_it_can_do(frontend: Frontend, http: httpx.Client) -> None:
    page = frontend.page
    page.locator("button.comfypack-deploy").click()
    assert wait_panel(frontend, "done|error", 60_000) == "done"
    caps = http.get("/comfypack/capabilities").json()
    text = page.locator(PANEL).inner_text()
    build = page.locator(f"{PANEL} button.cp-build")
    deploy = page.locator(f"{PANEL} button.cp-deploy")
    assert build.is_enabled() == caps["build"]
    assert deploy.is_enabled() == bool(caps["deploy"] and caps["bentocloud"]["logged_in"])
    if not caps["build"]:
        assert "`comfypack build` is not available in this version" in text
    if caps["deploy"] and not caps["bentocloud"]["logged_in"]:
        assert "bentoml cloud login" in text
    _shot(frontend, "07_deploy")
    if caps["deploy"]:  # a dry run: what would be deployed (no build, no network, no login)
        page.locator(f"{PANEL} button.cp-preview").click()
        assert wait_panel(frontend, "done|error", 60_000) == "done", page.locator(
            PANEL
        ).inner_text()
        assert "Deployment preview for" in page.locator(f"{PANEL} .cp-status-text").inner_text()
        assert '"bento"' in page.locator(f"{PANEL} .cp-result").inner_text()
        _shot(frontend, "08_deploy_preview")
    page.locator(f"{PANEL} .cp-close").click()


def test_the_comfypack_menu_commands(frontend: Frontend) -> None:
    page = frontend.page
    ids = page.evaluate(
        "() => window.app.extensionManager.command.commands.map((c) => c.id)"
        ".filter((id) => id.startsWith('Comfypack.'))"
    )
    assert sorted(ids) == [
        "Comfypack.Deploy",
        "Comfypack.Pack",
        "Comfypack.Serve",
        "Comfypack.ShowApi",
        "Comfypack.StopAll",
    ]
    _load(frontend, "menu_api")
    page.evaluate("() => window.app.extensionManager.command.execute('Comfypack.ShowApi')")
    assert wait_panel(frontend, "done|error", 30_000) == "done"
    assert page.locator(f"{PANEL} tr[data-field]").count() == 5
    page.locator(f"{PANEL} .cp-close").click()


def test_a_setting_hides_the_buttons(frontend: Frontend) -> None:
    page = frontend.page
    serve = page.locator("button.comfypack-serve")
    assert serve.is_visible()
    page.evaluate("() => window.app.extensionManager.setting.set('Comfypack.ShowButtons', false)")
    serve.wait_for(state="hidden", timeout=10_000)
    _shot(frontend, "09_buttons_hidden")
    page.evaluate("() => window.app.extensionManager.setting.set('Comfypack.ShowButtons', true)")
    serve.wait_for(state="visible", timeout=10_000)


_TOP = """([x, y]) => {
    const el = document.elementFromPoint(x, y);
    return el ? (el.closest('#comfypack-panel') ? 'panel' : (el.outerHTML || '').slice(0, 200)) : null;
}"""


def _header_point(fe: Frontend) -> tuple[float, float]:
    box = fe.page.locator(f"{PANEL} .cp-head").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


# toasts: PrimeVue's (up to 1.45), 1.58's toast viewport (Reka)
_TOASTS_AT = """([x, y]) => [...document.querySelectorAll('.p-toast-message, [data-toast-kind]')].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.width > 0 && r.left <= x && x <= r.right && r.top <= y && y <= r.bottom;
}).length"""


def test_the_panel_stays_above_the_frontends_dialogs_and_toasts(frontend: Frontend) -> None:
    """Toasts where the frontend shows them (top right, as the panel), then a dialog of the
    frontend's own: the panel's header stays the topmost thing under the pointer (hit-testing:
    ``elementFromPoint`` and the clicks themselves), a click in it leaves that dialog open, and
    its × closes it. On 1.58 a modal dialog sets ``pointer-events: none`` on <body> and moves
    the toasts to the very top; z-index alone does not keep the panel usable there."""
    page = frontend.page
    _load(frontend, "layers")
    page.evaluate("() => window.app.extensionManager.command.execute('Comfypack.ShowApi')")
    assert wait_panel(frontend, "done|error", 30_000) == "done"
    point = _header_point(frontend)
    for i in range(4):
        page.evaluate(
            "(i) => window.app.extensionManager.toast.add({severity: 'info', summary: 'layers', "
            "detail: 'a toast ' + i, life: 30000})",
            i,
        )
    page.wait_for_timeout(500)
    assert page.evaluate(_TOP, list(point)) == "panel"
    # a dialog of the frontend's own (its settings), opened over everything
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    page.wait_for_selector(f"{DIALOGS}", state="visible", timeout=10_000)
    page.wait_for_timeout(500)  # the toasts move (1.58: to the top while a dialog is open)
    _shot(frontend, "10_panel_over_dialog")
    assert page.evaluate(_TOASTS_AT, list(point)) >= 1, (
        "no toast under the panel's header: nothing tested"
    )
    assert page.evaluate(_TOP, list(point)) == "panel"
    page.mouse.click(*point)  # a click on the header stays in the panel ...
    page.wait_for_timeout(300)
    assert page.locator(DIALOGS).first.is_visible(), (
        "a click in the panel closed the frontend's dialog"
    )
    page.locator(f"{PANEL} .cp-close").click(timeout=10_000)  # ... and its × is clickable over both
    assert page.locator(PANEL).count() == 0
    assert frontend.dismiss_dialogs(settle_ms=500) >= 1  # and the dialog closes like a user would

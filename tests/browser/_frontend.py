"""Drive ComfyUI's real frontend in headless Chromium (Playwright) — the ground truth for the
UI → API conversion. Used by ``test_ui_conversion.py`` and ``scripts/make_ui_examples.py``.

Playwright's own browser download cannot run here: the system Chromium (``apt-get install
chromium``, done by ``scripts/setup.sh``) is launched instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

CHROMIUM = os.environ.get("COMFYPACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

_READY = """() => window.app && window.app.graph && window.LiteGraph
    && window.LiteGraph.registered_node_types && window.LiteGraph.registered_node_types['KSampler']"""

# Frontend 1.58.1 keeps a CURVE widget's value (CurveEditor) as a Vue reactive object, so its own
# structuredClone of the loaded graph (opening it as a workflow tab, after the graph is configured)
# throws DataCloneError — as it does for a user opening such a workflow. The graph is loaded by
# then: the export is taken anyway, the error kept as a note; any other load error is an error.
_LOAD_UI = """async ([wf, ms]) => {
    const work = (async () => {
        let loadError = null;
        try {
            await window.app.loadGraphData(wf, true, true, null,
                {showMissingNodesDialog: false, showMissingModelsDialog: false});
        } catch (e) {
            if (!e || e.name !== 'DataCloneError') throw e;
            loadError = `${e.name}: ${e.message}`;
        }
        const output = (await window.app.graphToPrompt()).output;
        return {output: JSON.parse(JSON.stringify(output)), loadError};  // plain JSON, no proxies
    })();
    const late = new Promise((_, no) => setTimeout(() => no(new Error(`no answer in ${ms} ms`)), ms));
    return await Promise.race([work, late]);
}"""

_LOAD_API = """async ([api, name]) => {
    window.app.loadApiJson(api, name);
    await new Promise((r) => setTimeout(r, 50));
    return JSON.parse(JSON.stringify(window.app.graph.serialize()));  // as Save writes it
}"""

# modal dialogs: PrimeVue's mask (frontends up to 1.45), the dialog component of 1.58 (z-index 1700)
DIALOGS = '.p-dialog-mask, [data-testid="dialog-overlay"]'
_CLOSE = (
    '[role="dialog"] button[aria-label="Close"], [role="dialog"] button:has(.pi-times), '
    '.p-dialog button:has(.pi-times), [role="dialog"] button.p-dialog-close-button'
)


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (scripts/setup.sh installs it: apt-get install chromium)"
    return None


def require_chromium() -> None:
    """Skip (with the reason) when the browser cannot run — a failure under `make test` / CI
    (COMFYPACK_REQUIRE_COMFYUI=1), where a missing browser is a gap, not a skip."""
    import pytest

    why = chromium_missing()
    if why:
        if os.environ.get("COMFYPACK_REQUIRE_COMFYUI") == "1":
            pytest.fail(why)
        pytest.skip(why)


class Frontend:
    """ComfyUI's page at ``url`` in headless Chromium, ready to load graphs."""

    def __init__(self, url: str, *, timeout_ms: int = 60_000) -> None:
        self.url = url
        self.timeout_ms = timeout_ms
        self.console: list[str] = []
        self.load_error: str | None = None

    def __enter__(self) -> Frontend:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            self.page = self._browser.new_page(viewport={"width": 1280, "height": 800})
            self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
            self.page.goto(self.url, wait_until="domcontentloaded", timeout=self.timeout_ms)
            self.page.wait_for_function(_READY, timeout=self.timeout_ms)
            self.dismiss_dialogs()
        except BaseException:
            self._pw.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._browser.close()
        finally:
            self._pw.stop()

    def dismiss_dialogs(self, settle_ms: int = 1500) -> int:
        """Close what the frontend opens over the canvas at start (the template browser, a
        what's-new dialog), as a user would: Escape, else the dialog's close button. Waits
        ``settle_ms`` for one to appear first. Returns how many were closed."""
        closed = 0
        try:
            self.page.wait_for_selector(DIALOGS, state="visible", timeout=settle_ms)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: nothing opened
            return 0
        for _ in range(5):
            dialogs = self.page.locator(DIALOGS)
            if not any(d.is_visible() for d in dialogs.all()):
                return closed
            self.page.keyboard.press("Escape")
            try:
                self.page.wait_for_selector(DIALOGS, state="hidden", timeout=3000)
            except Exception:  # noqa: BLE001 - Escape did not close it: its close (×) button
                close = self.page.locator(_CLOSE).first
                if close.count():
                    close.click()
                    with contextlib.suppress(Exception):
                        self.page.wait_for_selector(DIALOGS, state="hidden", timeout=3000)
            closed += 1
        raise RuntimeError(
            f"cannot close the frontend's dialog: {self.page.locator(DIALOGS).first.inner_text()[:300]}"
        )

    def version(self) -> str:
        """The frontend package's version (``window.__COMFYUI_FRONTEND_VERSION__``)."""
        return str(self.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || 'unknown'"))

    def graph_to_prompt(self, ui: dict[str, Any]) -> dict[str, Any]:
        """Load a UI-format workflow and return the frontend's API export (``graphToPrompt``).
        ``load_error`` says what the frontend's own load threw after configuring the graph (see
        ``_LOAD_UI``), or None."""
        result: dict[str, Any] = self.page.evaluate(_LOAD_UI, [ui, self.timeout_ms])
        self.load_error = result.get("loadError")
        output: dict[str, Any] = result["output"]
        return output

    def api_to_ui(self, api: dict[str, Any], name: str) -> dict[str, Any]:
        """Load an API-format workflow (``loadApiJson``) and return the graph ComfyUI would Save."""
        result: dict[str, Any] = self.page.evaluate(_LOAD_API, [api, name])
        return result

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))


# -- comfypack's canvas panel (Serve / Pack / Deploy) ---------------------------------------

PANEL = "#comfypack-panel"

_LOAD_TAB = """async ([wf, name]) => {
    await window.app.loadGraphData(wf, true, true, name,
        {showMissingNodesDialog: false, showMissingModelsDialog: false});
    return (await window.app.graphToPrompt()).output;
}"""


def load_into_tab(fe: Frontend, ui: dict[str, Any], name: str) -> dict[str, Any]:
    """Load a UI-format workflow into a new workflow tab called ``name`` (a taken name gets
    " (2)"); returns the frontend's API export of it."""
    api: dict[str, Any] = fe.page.evaluate(_LOAD_TAB, [ui, name])
    return api


def wait_panel(fe: Frontend, states: str, timeout_ms: int = 120_000) -> str:
    """Wait until comfypack's panel is in one of ``states`` ("done|error") and return the state."""
    selector = ", ".join(f"{PANEL}[data-state={s}]" for s in states.split("|"))
    fe.page.wait_for_selector(selector, timeout=timeout_ms)
    state: str = fe.page.locator(PANEL).get_attribute("data-state") or ""
    return state


# -- which frontends the browser tests run on -------------------------------------------------

#: The newest frontend package, unpacked by `make setup` (scripts/setup.sh) into .cache/frontends/.
NEWEST_FRONTEND = "1.58.1"
PINNED = "pinned"  # the frontend the ComfyUI under test pins (installed in its venv)
ROOT = Path(__file__).resolve().parents[2]


def newest_frontend_dir() -> Path:
    return ROOT / ".cache" / "frontends" / NEWEST_FRONTEND


def frontend_variants() -> list[str]:
    """The frontends to test the canvas and the conversion on: the pinned one, and on the
    current ComfyUI line (0.25 and later) also the newest package."""
    import re

    from comfypack.comfyui.source import comfyui_version
    from comfypack.config import default_comfyui_dir

    version = tuple(
        int(n) for n in re.findall(r"\d+", comfyui_version(default_comfyui_dir()) or "")[:2]
    )
    return [PINNED, NEWEST_FRONTEND] if version >= (0, 25) else [PINNED]


@contextlib.contextmanager
def comfyui_with_frontend(variant: str, comfyui: Any) -> Iterator[str]:
    """The URL of a ComfyUI serving frontend ``variant``: the session's own for the pinned one,
    else a second ComfyUI on the same tree started with ``--front-end-root``."""
    if variant == PINNED:
        yield comfyui.url
        return
    import pytest

    from comfypack.comfyui.process import ComfyUIProcess

    root = newest_frontend_dir()
    if not (root / "index.html").is_file():
        msg = f"frontend {variant} is not unpacked at {root}: run `make setup`"
        if os.environ.get("COMFYPACK_REQUIRE_COMFYUI") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with ComfyUIProcess(
        comfyui.comfyui_dir, startup_timeout=180, extra_args=["--front-end-root", str(root)]
    ) as proc:
        yield proc.url

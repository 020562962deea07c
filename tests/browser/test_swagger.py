"""Swagger's "Try it out" against a real `comfypack serve` (issue 14): the page that `/docs` opens
offers a multipart form for the typed endpoint, a file chosen there is uploaded, and Execute
answers 200 with the image — what a user trying the API in the browser does."""

from __future__ import annotations

from pathlib import Path

import pytest
from _frontend import CHROMIUM, CHROMIUM_ARGS, require_chromium
from conftest import EXAMPLES, ROOT, bentoml_serve

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ARTIFACTS = ROOT / "test-artifacts" / "swagger"


def test_try_it_out_uploads_a_file_and_gets_200(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    example = EXAMPLES / "image_adjust"
    with bentoml_serve(example / "workflow_api.json", tmp_path) as served, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{served.url}/docs")  # → Swagger UI on comfypack's /docs.json
            op = page.locator("#operations-workflow-generate")
            op.locator(".opblock-summary").click()
            op.locator(".try-out__btn").click()
            op.locator(".body-param-content-type select").select_option("multipart/form-data")
            op.locator("input[type=file]").first.set_input_files(str(example / "example.png"))
            with page.expect_response(
                lambda r: r.url.endswith("/generate") and r.request.method == "POST",
                timeout=120_000,
            ) as answer:
                op.locator(".execute").click()
            response = answer.value
            page.screenshot(path=str(ARTIFACTS / "try_it_out.png"), full_page=True)
            assert response.status == 200, response.text()[:500]
            assert response.headers["content-type"] == "image/png"
            assert (
                int(response.headers["content-length"]) > 100
            )  # the image (Swagger keeps the bytes)
            # the request Swagger sent was the multipart upload of that file
            assert "multipart/form-data" in (response.request.headers.get("content-type") or "")
            status = op.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for()
            assert status.inner_text().strip() == "200"
            # Swagger shows the answer as the picture it is (binary, not JSON)
            assert (
                op.locator(".live-responses-table img").count() == 1
            )  # shown inline: it is an image
        finally:
            browser.close()

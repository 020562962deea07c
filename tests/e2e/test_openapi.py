"""The OpenAPI document against the real service (issue 14): schemathesis (`--checks all`, a
bounded number of examples) finds nothing against any served example; `bentoml.SyncHTTPClient`
calls it with JSON; the document names the workflow and carries a security scheme with a key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, ROOT, bentoml_serve

from comfypack.workflow.interface import FILE_KINDS, load_workflow, parse_interface

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "workflow_api.json").is_file())
HOOKS = ROOT / "tests" / "e2e" / "schemathesis_hooks"
_WARNINGS = (
    "missing_auth",
    "base_url_mismatch",
    "validation_mismatch",
    "missing_deserializer",
    "unused_openapi_auth",
    "unsupported_regex",
    "method_not_allowed",
    "constants_extraction",
    "unmatched_filter",
    "unresolvable_reference",
    "low_valid_rate",
    "rate_limited",
    "dictionary_mismatch",
    "timeout_units",
)


def _schemathesis() -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is missing from this environment: run `make setup` (a dev dependency)"
    return [exe]


@pytest.mark.parametrize("name", NAMES)
def test_schemathesis_finds_nothing(name: str, tmp_path: Path) -> None:
    interface = parse_interface(load_workflow(EXAMPLES / name / "workflow_api.json"))
    files = {s.name: s.kind for s in interface.inputs if s.kind in FILE_KINDS}
    with bentoml_serve(EXAMPLES / name / "workflow_api.json", tmp_path) as served:
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "valid_media",
            "COMFYPACK_ST_FILE_FIELDS": json.dumps(files),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
        }
        run = subprocess.run(
            [
                *_schemathesis(),
                "run",
                f"{served.url}/docs.json",
                "--url",
                served.url,
                "--checks",
                "all",
                "--max-examples",
                "8",
                "--seed",
                "1",
                "--request-timeout",
                "120",
                "--no-color",
                # which graphs a v2 job may run is the served workflow's policy, not a
                # schema: schema-valid graphs are rightly 422. tests/e2e/test_comfy_v2.py
                # drives that route with the real comfy-sdk.
                "--exclude-operation-id",
                "v2SubmitJob",
                # ...so no job exists and random job / asset ids are 404 (missing test
                # data): every other warning stays on
                "--warnings",
                ",".join(_WARNINGS),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=540,
        )
        report = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, report
        assert "No issues found" in run.stdout, report


def test_the_document_names_the_workflow_and_has_a_key_scheme(tmp_path: Path) -> None:
    with bentoml_serve(
        EXAMPLES / "text_tools" / "workflow_api.json", tmp_path, env={"COMFYPACK_API_KEY": "sekrit"}
    ) as served:
        assert (
            httpx.get(f"{served.url}/docs.json", timeout=10).status_code == 401
        )  # the key guards it too
        doc = httpx.get(
            f"{served.url}/docs.json", headers={"X-API-Key": "sekrit"}, timeout=10
        ).json()
        assert doc["info"]["title"] == "text_tools"
        assert len(doc["info"]["version"]) == 12 and "sha256" in doc["info"]["description"]
        assert "`text`" in doc["info"]["description"]
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        # the key the document declares is the one the service wants
        r = httpx.post(f"{served.url}/generate", json={"text": "a"}, timeout=60)
        assert r.status_code == 401
        r = httpx.post(
            f"{served.url}/generate",
            json={"text": "a"},
            headers={"X-API-Key": "sekrit"},
            timeout=60,
        )
        assert r.status_code == 200, r.text


def test_submit_validates_like_generate(tmp_path: Path) -> None:
    with bentoml_serve(EXAMPLES / "text_tools" / "workflow_api.json", tmp_path) as served:
        for url in (f"{served.url}/generate", f"{served.url}/generate/submit"):
            r = httpx.post(url, json={"text": "a", "bogus": 1}, timeout=60)
            assert r.status_code == 422, (url, r.text)
            assert r.json()["error"]["details"][0]["field"] == "bogus"


def test_bentoml_sync_http_client_calls_the_service(tmp_path: Path) -> None:
    import bentoml

    with (
        bentoml_serve(EXAMPLES / "text_tools" / "workflow_api.json", tmp_path) as served,
        bentoml.SyncHTTPClient(served.url, timeout=60) as client,
    ):
        out = client.generate(text="hello", case="Title Case")
        assert out == {"text": "Hello Comfyui", "length": 13, "contains": True}


def test_bentoml_sync_http_client_sends_files_as_data_uris(tmp_path: Path) -> None:
    """BentoML's client sends JSON: file inputs go as `data:` URIs (or URLs), and a workflow that
    answers JSON comes back as a dict with its files as `data:` URIs."""
    import bentoml

    request = json.loads((EXAMPLES / "image_mask_text" / "request.json").read_text())
    with (
        bentoml_serve(EXAMPLES / "image_mask_text" / "workflow_api.json", tmp_path) as served,
        bentoml.SyncHTTPClient(served.url, timeout=120) as client,
    ):
        out = client.generate(**request)
        assert set(out) == {"inverted", "mask", "noisy", "caption", "width", "attachment", "seeds"}
        assert "an orange disc" in out["caption"] and out["width"] == 32
        assert out["inverted"].startswith("data:image/png;base64,")
        assert out["mask"].startswith("data:image/webp;base64,")
        assert out["seeds"] == {"seed": 42}

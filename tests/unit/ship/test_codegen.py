"""comfypack.ship.codegen: the generated client — golden files, determinism, mypy, ruff, behaviour.

Each generated module is imported from a temp dir and driven through an httpx ``MockTransport``:
what it sends (JSON, multipart as the service parses it, data: URIs for jobs) and how it reads
each answer the service gives (JSON, the raw file, errors). Golden files live in
``tests/golden/client_<example>.py``; regenerate them with ``COMFYPACK_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import http_server
from pydantic import ValidationError

from comfypack.cli import cli
from comfypack.errors import RequestError
from comfypack.serve.multipart import form_to_body
from comfypack.ship.codegen import generate_client
from comfypack.workflow.interface import (
    InputSpec,
    Interface,
    OutputSpec,
    load_workflow,
    parse_interface,
)
from comfypack.workflow.media import Upload
from comfypack.workflow.schema import input_schema, validate_request

from .._helpers import EXAMPLE_NAMES, ROOT, example, png_bytes

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("COMFYPACK_UPDATE_GOLDEN") == "1"
BIN = Path(sys.executable).parent
_counter = itertools.count()


def interface_of(name: str) -> Interface:
    return parse_interface(load_workflow(example(name)))


def source_of(name: str) -> str:
    return generate_client(interface_of(name), workflow_name=name)


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Callable[[str], ModuleType]]:
    """Import generated source as a fresh module (removed from sys.modules afterwards)."""
    names: list[str] = []

    def _load(source: str) -> ModuleType:
        name = f"generated_client_{next(_counter)}"
        path = tmp_path / f"{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pydantic resolve annotations through it
        names.append(name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in names:
        sys.modules.pop(name, None)


class Server:
    """A MockTransport handler: records requests, answers with ``respond(request)``."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda r: httpx.Response(200, json={}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.respond(request)

    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def form(request: httpx.Request) -> list[tuple[str, Any]]:
    """A multipart request parsed as the service parses it (starlette, files as Uploads)."""
    from starlette.requests import Request

    body = request.content

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse() -> list[tuple[str, Any]]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/generate",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
        }
        parsed = await Request(scope, receive).form()
        items: list[tuple[str, Any]] = []
        for key, value in parsed.multi_items():
            items.append(
                (
                    key,
                    value if isinstance(value, str) else Upload(await value.read(), value.filename),
                )
            )
        return items

    return asyncio.run(parse())


def data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# ----------------------------------------------------------------------------------------------
# the text: golden, deterministic, formatted, typed


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_golden_file(name: str) -> None:
    golden = GOLDEN / f"client_{name}.py"
    source = source_of(name)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(source, encoding="utf-8")
    assert golden.is_file(), f"no {golden}: run with COMFYPACK_UPDATE_GOLDEN=1"
    assert source == golden.read_text(encoding="utf-8"), (
        f"the client for {name} changed; if on purpose, regenerate with COMFYPACK_UPDATE_GOLDEN=1"
    )


def test_same_interface_same_bytes_in_other_processes() -> None:
    code = (
        "import sys; from comfypack.ship.codegen import generate_client; "
        "from comfypack.workflow.interface import load_workflow, parse_interface; "
        "sys.stdout.write(generate_client(parse_interface(load_workflow(sys.argv[1])), "
        "workflow_name='image_mask_text'))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, str(example("image_mask_text"))],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {source_of("image_mask_text").encode()}
    assert source_of("image_mask_text") == source_of("image_mask_text")


#: Names that clash with what a generated class uses, quotes and escapes in every text.
TRICKY = Interface(
    inputs=(
        InputSpec(
            "self",
            "string",
            "1",
            "default",
            default='say "hi" \\ \n now',
            description='Quotes " and """ and a back\\slash, ünïcödé — "end"',
        ),
        InputSpec("json", "int", "2", "default", default=8, minimum=8, maximum=64, step=8),
        InputSpec("str", "float", "3", "default", default=1e-05, minimum=0.0, maximum=1e6),
        InputSpec("Field", "boolean", "4", "default", default=True),
        InputSpec("model_config", "choice", "5", "default", default="only", options=("only",)),
        InputSpec("mode", "choice", "6", "default", default="b", options=("a", "b", 'say "x"')),
        InputSpec("int", "seed", "7", "default", minimum=0, maximum=2**64 - 1),
        InputSpec("Client", "image", "8", "image", required=True),
        InputSpec("GenerateInput", "file", "9", "file", required=True, description="x" * 120),
    ),
    outputs=(
        OutputSpec("batch", "image", "20", description="node 20 (Batch)", format="png"),
        OutputSpec("str", "text", "21"),
        OutputSpec("OutputFile", "number", "22"),
        OutputSpec("data", "json", "23"),
    ),
)


def _tool(name: str) -> str | None:
    return shutil.which(name, path=str(BIN)) or shutil.which(name)


def _write_all(tmp_path: Path) -> list[Path]:
    paths = []
    for name in EXAMPLE_NAMES:
        paths.append(tmp_path / f"client_{name}.py")
        paths[-1].write_text(source_of(name), encoding="utf-8")
    (tmp_path / "client_tricky.py").write_text(
        generate_client(TRICKY, workflow_name='tricky "one"\\', endpoint="/v1/run/"),
        encoding="utf-8",
    )
    (tmp_path / "client_empty.py").write_text(
        generate_client(Interface(), workflow_name="empty"), encoding="utf-8"
    )
    return [*paths, tmp_path / "client_tricky.py", tmp_path / "client_empty.py"]


USAGE = """\
from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from client_image_mask_text import AsyncClient, Client, GenerateResult, OutputFile


def use(client: Client) -> None:
    result: GenerateResult = client.generate(
        image=Image.new("RGB", (4, 4)), attachment=Path("a.bin"), seed=None, noise=0.5
    )
    data: bytes = result.inverted.data
    caption: str = result.caption
    width: float = result.width
    seed: int = result.seeds.seed
    saved: Path = result.mask.save("mask.webp")
    files: list[OutputFile] = [result.attachment]
    print(data, caption, width, seed, saved, files, client.generate(image=b"x", attachment="https://x/a"))
    task: str = client.submit(image="a.png", attachment=bytearray(b"x"))
    print(client.result(task).batch("noisy"), client.status(task), client.progress(task))


async def use_async() -> None:
    async with AsyncClient("http://127.0.0.1:3000", api_key="k") as client:
        result = await client.generate(image="a.png", attachment=b"x")
        print(result.noisy.to_pil(), await client.is_ready())


asyncio.run(use_async())
"""

#: Each line is a call mypy must refuse (the line number is checked).
MISUSE = """\
from client_image_adjust import Client
from client_text_tools import Client as TextClient

client = Client("http://127.0.0.1:3000")
client.generate(image=b"x", upscale_method="cubic")
client.generate(image=b"x", width="64")
client.generate(image=1)
client.generate(width=64)
client.generate(image=b"x", colour="red")
TextClient("u").generate(case_sensitive="yes")
text: int = TextClient("u").generate().text
"""


def test_generated_modules_pass_mypy_strict(tmp_path: Path) -> None:
    """mypy --strict: no error in any generated module or in typical use; misuse is caught."""
    mypy = _tool("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed (pip install comfypack[dev])")
    _write_all(tmp_path)
    (tmp_path / "usage.py").write_text(USAGE)
    (tmp_path / "misuse.py").write_text(MISUSE)
    out = subprocess.run(
        [
            mypy,
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy"),
            "--python-version",
            "3.10",
            ".",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert [e for e in errors if not e.startswith("misuse.py:")] == [], out.stdout + out.stderr
    flagged = {int(e.split(":")[1]) for e in errors}
    assert flagged == set(range(5, 12)), out.stdout


def test_generated_modules_are_formatted_and_lint_clean(tmp_path: Path) -> None:
    """`ruff format` leaves the text as it is (at 88 columns — ruff's and black's default — and
    wider) and `ruff check` is clean."""
    ruff = _tool("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install comfypack[dev])")
    paths = [str(p) for p in _write_all(tmp_path)]
    for width in ("88", "100", "120"):
        fmt = subprocess.run(
            [ruff, "format", "--isolated", "--line-length", width, "--check", "--diff", *paths],
            capture_output=True,
            text=True,
        )
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    examples = [p for p in paths if "tricky" not in p]  # TRICKY has long data lines on purpose
    lint = subprocess.run(
        [
            ruff,
            "check",
            "--isolated",
            "--select",
            "E,F,W,I,B,UP",
            "--target-version",
            "py310",
            *examples,
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    lint = subprocess.run(
        [
            ruff,
            "check",
            "--isolated",
            "--select",
            "E,F,W,I,B,UP",
            "--ignore",
            "E501",
            "--target-version",
            "py310",
            str(tmp_path / "client_tricky.py"),
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# ----------------------------------------------------------------------------------------------
# the model: types, defaults, bounds, enums, descriptions — and agreement with the service


def test_input_model_mirrors_the_interface(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("image_adjust"))
    fields = mod.GenerateInput.model_fields
    assert list(fields) == ["image", "upscale_method", "width", "height", "blur_radius", "sigma"]
    assert fields["image"].is_required() and fields["image"].description == "The picture to adjust."
    assert fields["width"].default == 64 and fields["sigma"].default == 1.0
    assert fields["upscale_method"].default == "bilinear"
    import inspect

    params = inspect.signature(mod.Client.generate).parameters
    assert list(params) == [
        "self",
        "image",
        "upscale_method",
        "width",
        "height",
        "blur_radius",
        "sigma",
    ]
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "self")
    assert mod.WORKFLOW == "image_adjust" and mod.ENDPOINT == "/generate"
    assert "Gaussian blur strength. From 0.1 to 10.0. Default: 1.0." in mod.Client.generate.__doc__


def test_required_inputs_come_first(load: Callable[[str], ModuleType]) -> None:
    import inspect

    mod = load(source_of("image_mask_text"))
    assert list(inspect.signature(mod.Client.generate).parameters)[1:] == [
        "image",
        "attachment",
        "seed",
        "noise",
        "caption",
    ]


def _candidates(interface: Interface) -> Iterator[tuple[dict[str, Any], bool]]:
    """Bodies around every constraint; ``True`` when each value has the field's Python type."""
    props = input_schema(interface)["properties"]
    files = {s.name: "eA==" for s in interface.inputs if s.is_file}
    for spec in interface.inputs:
        prop = props[spec.name]
        typed: list[Any] = []
        wrong: list[Any] = [None, [1], {"a": 1}]
        if spec.kind in ("int", "seed"):
            lo = int(spec.minimum if spec.minimum is not None else -5)
            hi = int(spec.maximum if spec.maximum is not None else 10**6)
            step = prop.get("multipleOf", 1)
            typed = [lo, hi, lo - 1, hi + 1, lo + step, lo + 1, 0]
            wrong += ["5", True, 1.5]
            if spec.kind == "seed":
                wrong.remove(None)
                typed.append(None)
        elif spec.kind == "float":
            lo = float(spec.minimum if spec.minimum is not None else -5.0)
            hi = float(spec.maximum if spec.maximum is not None else 1e6)
            typed = [lo, hi, lo - 0.01, hi + 0.01, (lo + hi) / 2, int(hi)]
            wrong += ["0.5", True]
        elif spec.kind == "string":
            n = prop.get("maxLength", 10)
            typed = ["", "x" * n, "x" * (n + 1) if "maxLength" in prop else "y"]
            wrong += [5, True]
        elif spec.kind == "boolean":
            typed = [True, False]
            wrong += ["true", 1]
        elif spec.kind == "choice":
            typed = [*spec.options, "nope", spec.options[0].upper() + "!"]
            wrong += [0]
        else:
            continue
        for value in typed:
            yield {**files, spec.name: value}, True
        for value in wrong:
            yield {**files, spec.name: value}, False
    yield {**files, "unknown_field": 1}, True
    for name in files:
        yield {k: v for k, v in files.items() if k != name}, True


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_the_client_checks_what_the_service_checks(
    name: str, load: Callable[[str], ModuleType]
) -> None:
    """Values of the right Python type: client and service agree exactly. Anything else: the
    client never lets through a value the service would refuse."""
    interface = interface_of(name)
    mod = load(generate_client(interface, workflow_name=name))
    client_files = {s.name: b"x" for s in interface.inputs if s.is_file}
    checked = 0
    for body, typed in _candidates(interface):
        try:
            validate_request(interface, body)
            service_ok = True
        except RequestError:
            service_ok = False
        try:
            mod.GenerateInput.model_validate(
                {**body, **{k: client_files[k] for k in body if k in client_files}}
            )
            client_ok = True
        except ValidationError:
            client_ok = False
        if typed:
            assert client_ok == service_ok, (name, body, client_ok, service_ok)
        else:
            assert not client_ok or service_ok, (name, body)
        checked += 1
    assert checked >= 2


BAD_CALLS = {
    "out of range": ("image_adjust", {"image": b"x", "sigma": 20.0}, "sigma"),
    "not a multiple of the step": ("image_adjust", {"image": b"x", "width": 12}, "width"),
    "not an option": ("image_adjust", {"image": b"x", "upscale_method": "cubic"}, "upscale_method"),
    "wrong type": ("image_adjust", {"image": b"x", "width": "64"}, "width"),
    "missing file": ("image_adjust", {"image": "/no/such/file.png"}, "image"),
    "empty bytes": ("image_adjust", {"image": b""}, "image"),
    "not a file at all": ("image_adjust", {"image": 42}, "image"),
    "too long": (
        "image_mask_text",
        {"image": b"x", "attachment": b"x", "caption": "x" * 201},
        "caption",
    ),
    "negative seed": ("image_mask_text", {"image": b"x", "attachment": b"x", "seed": -1}, "seed"),
    "seed too large": (
        "image_mask_text",
        {"image": b"x", "attachment": b"x", "seed": 2**64},
        "seed",
    ),
    "NaN": ("image_mask_text", {"image": b"x", "attachment": b"x", "noise": float("nan")}, "noise"),
    "bool for a string": ("text_tools", {"text": True}, "text"),
    "str for a bool": ("text_tools", {"case_sensitive": "yes"}, "case_sensitive"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_arguments_fail_before_anything_is_sent(
    case: str, load: Callable[[str], ModuleType]
) -> None:
    name, kwargs, field = BAD_CALLS[case]
    mod = load(source_of(name))
    server = Server()
    with mod.Client("http://svc", transport=server.sync()) as client:
        with pytest.raises(ValidationError) as info:
            client.generate(**kwargs)
        with pytest.raises(ValidationError):
            client.submit(**kwargs)
    assert [e["loc"][0] for e in info.value.errors()] == [field]
    assert server.requests == []


def test_missing_and_unknown_arguments_are_type_errors(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("image_adjust"))
    client = mod.Client("http://svc", transport=Server().sync())
    with pytest.raises(TypeError, match="image"):
        client.generate()
    with pytest.raises(TypeError, match="colour"):
        client.generate(image=b"x", colour="red")


# ----------------------------------------------------------------------------------------------
# requests: JSON, multipart (as the service parses it), data: URIs for jobs


def test_json_when_there_is_no_file_to_upload(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("text_tools"))
    server = Server(
        lambda r: httpx.Response(200, json={"text": "X", "length": 1, "contains": False})
    )
    with mod.Client("http://svc/", api_key="secret", transport=server.sync()) as client:
        result = client.generate(text="hi", case="lowercase")
    (request,) = server.requests
    assert request.method == "POST" and str(request.url) == "http://svc/generate"
    assert request.headers["authorization"] == "Bearer secret"
    assert json.loads(request.content) == {
        "text": "hi",
        "suffix": " ComfyUI",
        "case": "lowercase",
        "needle": "comfy",
        "case_sensitive": False,
    }
    assert (result.text, result.length, result.contains) == ("X", 1, False)


def test_files_are_uploaded_as_the_service_reads_them(
    load: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    from PIL import Image

    interface = interface_of("image_mask_text")
    mod = load(generate_client(interface, workflow_name="image_mask_text"))
    attachment = tmp_path / "notes.txt"
    attachment.write_bytes(b"hello")
    server = Server()
    client = mod.Client("http://svc", transport=server.sync())
    for image in (png_bytes(), Image.new("RGB", (3, 3), (1, 2, 3))):
        with pytest.raises(mod.ComfyPackAPIError):  # the mock answers {}: no outputs
            client.generate(image=image, attachment=attachment, seed=7, noise=0.25, caption="12")
    for request in server.requests:
        assert request.headers["content-type"].startswith("multipart/form-data")
        body = validate_request(interface, form_to_body(interface, form(request)))
        assert (body["seed"], body["noise"], body["caption"]) == (7, 0.25, "12")
        assert body["attachment"] == Upload(b"hello", "notes.txt")
    first, second = (
        validate_request(interface, form_to_body(interface, form(r)))["image"]
        for r in server.requests
    )
    assert first == Upload(png_bytes(), "image")
    assert second.filename == "image.png" and Image.open(
        __import__("io").BytesIO(second.data)
    ).size == (3, 3)


def test_urls_go_as_json_strings_and_a_random_seed_is_left_out(
    load: Callable[[str], ModuleType],
) -> None:
    mod = load(source_of("image_mask_text"))
    server = Server()
    client = mod.Client("http://svc", transport=server.sync())
    with pytest.raises(mod.ComfyPackAPIError):
        client.generate(image="https://example.com/a.png", attachment="data:text/plain;base64,eA==")
    (request,) = server.requests
    assert json.loads(request.content) == {
        "image": "https://example.com/a.png",
        "attachment": "data:text/plain;base64,eA==",
        "noise": 0.1,
        "caption": "a picture",
    }


def test_submit_sends_files_as_data_uris(load: Callable[[str], ModuleType], tmp_path: Path) -> None:
    interface = interface_of("image_adjust")
    mod = load(generate_client(interface, workflow_name="image_adjust"))
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes())
    server = Server(lambda r: httpx.Response(200, json={"task_id": "t1", "status": "in_progress"}))
    assert mod.Client("http://svc", transport=server.sync()).submit(image=path, width=16) == "t1"
    (request,) = server.requests
    assert request.url.path == "/generate/submit"
    body = json.loads(request.content)
    assert body["image"] == data_uri(png_bytes(), "image/png") and body["width"] == 16
    validate_request(interface, body)


def test_a_custom_endpoint(load: Callable[[str], ModuleType]) -> None:
    mod = load(
        generate_client(interface_of("text_tools"), workflow_name="t", endpoint="/api/v1/text/")
    )
    server = Server(lambda r: httpx.Response(200, json={"text": "", "length": 0, "contains": 1}))
    mod.Client("http://svc", transport=server.sync()).generate()
    assert server.requests[0].url.path == "/api/v1/text"
    with pytest.raises(ValueError, match="endpoint"):
        generate_client(interface_of("text_tools"), workflow_name="t", endpoint="a b")


# ----------------------------------------------------------------------------------------------
# responses: JSON outputs, the raw single file, batches, seeds, errors


def multi_response(request: httpx.Request) -> httpx.Response:
    png = png_bytes()
    return httpx.Response(
        200,
        json={
            "inverted": data_uri(png, "image/png"),
            "mask": [data_uri(b"RIFFa", "image/webp"), data_uri(b"RIFFb", "image/webp")],
            "noisy": data_uri(png, "image/png"),
            "caption": "c",
            "width": 16,
            "attachment": data_uri(b"hello", "text/plain"),
            "seeds": {"seed": 123},
        },
    )


def test_json_outputs_become_typed_attributes(
    load: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    mod = load(source_of("image_mask_text"))
    result = mod.Client("http://svc", transport=Server(multi_response).sync()).generate(
        image=b"x", attachment=b"y"
    )
    assert result.inverted == mod.OutputFile(png_bytes(), "image/png", "inverted.png")
    assert bytes(result.attachment) == b"hello" and result.attachment.filename == "attachment.txt"
    assert result.mask.data == b"RIFFa"
    assert [f.data for f in result.batch("mask")] == [b"RIFFa", b"RIFFb"]
    assert (result.caption, result.width, result.seeds) == ("c", 16, mod.Seeds(seed=123))
    assert result.inverted.save(tmp_path) == tmp_path / "inverted.png"
    assert result.inverted.save(tmp_path / "x.png").read_bytes() == png_bytes()
    assert result.inverted.to_pil().size == (4, 3)


def test_a_raw_file_answer_is_the_single_output(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("audio_volume"))

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=b"fLaC...",
            headers={
                "content-type": "audio/flac",
                "content-disposition": 'inline; filename="run_audio_0001.flac"',
            },
        )

    result = mod.Client("http://svc", transport=Server(respond).sync()).generate(audio=b"RIFF")
    assert result.audio == mod.OutputFile(b"fLaC...", "audio/flac", "audio.flac")
    # a JSON file sent raw is still the file (told apart by Content-Disposition)
    mod2 = load(
        generate_client(Interface(outputs=(OutputSpec("report", "file", "1"),)), workflow_name="r")
    )

    def respond_json(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=b'{"a": 1}',
            headers={
                "content-type": "application/json",
                "content-disposition": 'inline; filename="x_report.json"',
                "x-comfypack-seeds": "{}",
            },
        )

    report = mod2.Client("http://svc", transport=Server(respond_json).sync()).generate().report
    assert report == mod2.OutputFile(b'{"a": 1}', "application/json", "report.json")


def test_raw_file_with_seeds_and_a_batch_of_the_single_output(
    load: Callable[[str], ModuleType],
) -> None:
    interface = Interface(
        inputs=(InputSpec("seed", "seed", "1", "default", minimum=0, maximum=2**64 - 1),),
        outputs=(OutputSpec("image", "image", "2", format="png"),),
    )
    mod = load(generate_client(interface, workflow_name="seeded"))
    raw = Server(
        lambda r: httpx.Response(
            200,
            content=b"PNG",
            headers={
                "content-type": "image/png",
                "content-disposition": 'inline; filename="a.png"',
                "x-comfypack-seeds": '{"seed": 9}',
            },
        )
    )
    result = mod.Client("http://svc", transport=raw.sync()).generate()
    assert (result.image.data, result.seeds.seed) == (b"PNG", 9)
    batch = Server(
        lambda r: httpx.Response(
            200,
            json={
                "image": [data_uri(b"1", "image/png"), data_uri(b"2", "image/png")],
                "seeds": {"seed": 4},
            },
        )
    )
    result = mod.Client("http://svc", transport=batch.sync()).generate(seed=4)
    assert [f.data for f in result.batch("image")] == [b"1", b"2"] and result.image.data == b"1"
    assert json.loads(batch.requests[0].content) == {"seed": 4}


def test_service_errors_raise_comfypack_api_error(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("image_adjust"))
    answers = iter(
        [
            httpx.Response(
                422,
                json={
                    "error": {
                        "type": "input_error",
                        "message": "image: is not a readable image",
                        "details": [{"field": "image", "message": "is not a readable image"}],
                    }
                },
            ),
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(404, json={"error": "task_id not found"}),
            httpx.Response(200, json={"something": "else"}),
        ]
    )
    client = mod.Client("http://svc", transport=Server(lambda r: next(answers)).sync())
    with pytest.raises(mod.ComfyPackAPIError) as info:
        client.generate(image=b"not an image")
    err = info.value
    assert (err.status, err.type, err.fields) == (422, "input_error", ["image"])
    assert "image" in err.message and err.details[0]["message"] == "is not a readable image"
    with pytest.raises(mod.ComfyPackAPIError) as info:
        client.generate(image=b"x")
    assert (info.value.status, info.value.type, info.value.message) == (
        502,
        "http_error",
        "<html>bad gateway</html>",
    )
    with pytest.raises(mod.ComfyPackAPIError, match="task_id not found"):
        client.status("nope")
    with pytest.raises(mod.ComfyPackAPIError, match="no value for output 'image'") as info:
        client.generate(image=b"x")
    assert info.value.type == "unexpected_response"


def test_names_that_clash_keep_their_wire_names(load: Callable[[str], ModuleType]) -> None:
    mod = load(generate_client(TRICKY, workflow_name="tricky"))
    assert mod.ENDPOINT == "/generate"
    server = Server(
        lambda r: httpx.Response(
            200,
            json={
                "batch": data_uri(b"p", "image/png"),
                "str": "s",
                "OutputFile": 2.5,
                "data": {"k": [1]},
                "seeds": {"int": 5},
            },
        )
    )
    result = mod.Client("http://svc", transport=server.sync()).generate(
        Client=b"img", GenerateInput=b"file", json=16, str=0.5, Field=False, int=5, self="me"
    )
    assert (result.batch_.data, result.str_, result.OutputFile_, result.data) == (
        b"p",
        "s",
        2.5,
        {"k": [1]},
    )
    assert result.batch("batch")[0].data == b"p" and result.seeds.int_ == 5
    items = dict(form(server.requests[0]))
    assert items["json"] == "16" and items["self"] == "me" and items["model_config"] == "only"
    assert (
        items["Field"] == "false"
        and items["int"] == "5"
        and items["Client"] == Upload(b"img", "Client")
    )
    body = validate_request(TRICKY, form_to_body(TRICKY, list(items.items())))
    assert body["json"] == 16 and body["str"] == 0.5 and body["Field"] is False
    with pytest.raises(ValidationError):
        mod.Client("http://svc").generate(Client=b"i", GenerateInput=b"f", json=12)


# ----------------------------------------------------------------------------------------------
# jobs and the async twin


def test_jobs_submit_status_progress_result_cancel(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("text_tools"))
    statuses = iter(["in_progress", "in_progress", "completed"])

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/generate/submit":
            return httpx.Response(200, json={"task_id": "t9", "status": "in_progress"})
        assert request.url.params["task_id"] == "t9"
        if path == "/generate/status":
            return httpx.Response(200, json={"task_id": "t9", "status": next(statuses)})
        if path == "/generate/progress":
            return httpx.Response(200, json={"status": "running", "progress": 0.5})
        if path == "/generate/cancel":
            assert request.method == "PUT"
            return httpx.Response(200, json={"task_id": "t9", "status": "cancelling"})
        assert path == "/generate/get"
        return httpx.Response(200, json={"text": "T", "length": 1, "contains": True})

    server = Server(respond)
    client = mod.Client("http://svc", transport=server.sync())
    task = client.submit(text="t")
    assert task == "t9" and json.loads(server.requests[0].content)["text"] == "t"
    assert client.progress(task) == {"status": "running", "progress": 0.5}
    assert client.result(task, poll_interval=0).text == "T"
    assert [r.url.path for r in server.requests].count("/generate/status") == 3
    client.cancel(task)


def test_async_client_is_the_twin(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("image_mask_text"))
    server = Server(lambda r: httpx.Response(503) if r.url.path == "/readyz" else multi_response(r))

    async def scenario() -> Any:
        async with mod.AsyncClient(
            "http://svc", api_key="k", transport=httpx.MockTransport(server)
        ) as client:
            with pytest.raises(ValidationError):
                await client.generate(image=b"x", attachment=b"y", noise=2.0)
            result = await client.generate(image=b"x", attachment=b"y", seed=3)
            ready = await client.is_ready()
            return result, ready

    result, ready = asyncio.run(scenario())
    assert (
        result.caption == "c"
        and result.seeds.seed == 123
        and result.mask.media_type == "image/webp"
    )
    assert ready is False
    assert [r.url.path for r in server.requests] == ["/generate", "/readyz"]
    assert all(r.headers["authorization"] == "Bearer k" for r in server.requests)


def test_is_ready_is_false_when_nothing_listens(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("text_tools"))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert mod.Client("http://svc", transport=httpx.MockTransport(refuse)).is_ready() is False
    ok = httpx.MockTransport(lambda r: httpx.Response(200 if r.url.path == "/readyz" else 404))
    assert mod.Client("http://svc", transport=ok).is_ready() is True


# ----------------------------------------------------------------------------------------------
# the CLI


def test_cli_writes_the_golden_client(tmp_path: Path) -> None:
    out = tmp_path / "client.py"
    result = CliRunner().invoke(
        cli, ["client", str(example("text_tools")), "-o", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == source_of("text_tools")
    printed = CliRunner().invoke(
        cli, ["client", str(example("video_invert"))], catch_exceptions=False
    )
    assert printed.exit_code == 0 and printed.stdout == source_of("video_invert")


def test_cli_names_and_endpoint(tmp_path: Path) -> None:
    wf = tmp_path / "my_flow.json"
    wf.write_text(example("text_tools").read_text())
    result = CliRunner().invoke(
        cli, ["client", str(wf), "--endpoint", "run"], catch_exceptions=False
    )
    assert result.exit_code == 0
    assert result.stdout == generate_client(
        interface_of("text_tools"), workflow_name="my_flow", endpoint="run"
    )
    bad = CliRunner().invoke(cli, ["client", str(wf), "--endpoint", "a b"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(cli, ["client", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_cli_reads_a_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfypack.files.hashing import HashCache
    from comfypack.lock.create import create_lock
    from comfypack.pack.archive import create_pack

    from .._lock_helpers import fake_env

    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))
    env = fake_env(tmp_path / "env")
    lock = create_lock(env.workflow_path, env.comfyui, resolvers=[], hash_cache=HashCache(None))
    pack = create_pack(env.workflow_path, env.comfyui, tmp_path / "upscale.cpack.zip", lock=lock)
    result = CliRunner().invoke(cli, ["client", str(pack)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == generate_client(parse_interface(env.workflow), workflow_name="upscale")
    assert "saveimage_4: OutputFile" in result.stdout


# ----------------------------------------------------------------------------------------------
# object storage: file answers as URLs to the stored files (issue 19)


class _Store(http.server.BaseHTTPRequestHandler):
    """A local stand-in for a bucket's signed URLs: serves fixed bytes, records headers."""

    files = {
        "/b/job/inverted/a.png": (png_bytes(), "image/png"),
        "/b/job/mask/m1.webp": (b"RIFFa", "image/webp"),
        "/b/job/mask/m2.webp": (b"RIFFb", "image/webp"),
        "/b/job/attachment/t.txt": (b"hello", "text/plain"),
    }
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(dict(self.headers))
        path = self.path.partition("?")[0]
        data, media_type = self.files.get(path, (b"", ""))
        self.send_response(200 if media_type else 404)
        self.send_header("Content-Type", media_type or "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_url_answers_are_downloaded_without_the_api_key(load: Callable[[str], ModuleType]) -> None:
    mod = load(source_of("image_mask_text"))
    _Store.seen = []
    with http_server(_Store) as store:
        sig = "?X-Amz-Signature=abc"

        def respond(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                200,
                json={
                    "inverted": f"{store}/b/job/inverted/a.png{sig}",
                    "mask": [
                        f"{store}/b/job/mask/m1.webp{sig}",
                        f"{store}/b/job/mask/m2.webp{sig}",
                    ],
                    "noisy": data_uri(png_bytes(), "image/png"),
                    "caption": "c",
                    "width": 16,
                    "attachment": f"{store}/b/job/attachment/t.txt{sig}",
                    "seeds": {"seed": 1},
                },
            )

        server = Server(respond)
        client = mod.Client("http://svc", transport=server.sync(), api_key="k3y", outputs="url")
        result = client.generate(image=b"x", attachment=b"y")
        assert server.requests[0].headers["x-comfypack-outputs"] == "url"
        assert result.inverted == mod.OutputFile(png_bytes(), "image/png", "inverted.png")
        assert result.inverted.url == f"{store}/b/job/inverted/a.png{sig}"
        assert [f.data for f in result.batch("mask")] == [b"RIFFa", b"RIFFb"]
        assert result.noisy.url is None and result.noisy.data == png_bytes()  # inline beside URLs
        assert (
            bytes(result.attachment) == b"hello" and result.attachment.filename == "attachment.txt"
        )
        assert len(_Store.seen) == 4
        assert not any("authorization" in {k.lower() for k in h} for h in _Store.seen)

        async def run_async() -> Any:
            aclient = mod.AsyncClient(
                "http://svc", transport=httpx.MockTransport(server), api_key="k3y"
            )
            async with aclient:
                return await aclient.generate(image=b"x", attachment=b"y")

        result2 = asyncio.run(run_async())
        assert result2.mask.data == b"RIFFa" and result2.attachment.url.endswith("t.txt" + sig)

        def gone(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                200, json={**respond(request).json(), "inverted": f"{store}/b/expired.png{sig}"}
            )

        with pytest.raises(mod.ComfyPackAPIError) as e:
            mod.Client("http://svc", transport=Server(gone).sync()).generate(
                image=b"x", attachment=b"y"
            )
        assert "HTTP 404" in str(e.value.message)

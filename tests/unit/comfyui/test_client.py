"""comfypack.comfyui.client against a fake ComfyUI (the "swapped transport" unit test).

The fake (``_fake_comfyui.FakeComfyUI``) is an aiohttp.web app on 127.0.0.1 started inside each
test; the integration tests run the same client against a real headless ComfyUI.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from comfypack.comfyui.client import ComfyUIClient, FileRef, ProgressEvent, RunResult
from comfypack.errors import ComfyUIError, ComfyUIUnavailable, ExecutionFailed, PromptRejected

from .._fake_comfyui import NODE_ERRORS, FakeComfyUI

PROMPT = {"9": {"class_type": "ComfyPackOutputText", "inputs": {"name": "t", "value": "x"}}}


def run_async(coro, timeout: float = 15.0):
    """Run one scenario; the bound only stops a broken test from hanging the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a run, over the websocket ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ok", "eager", "success"])
def test_run_resolves_from_the_websocket(mode):
    async def scenario():
        async with FakeComfyUI() as fake:
            fake.mode = mode
            events: list[ProgressEvent] = []
            async with ComfyUIClient(fake.url) as client:
                result = await client.run(PROMPT, prompt_id="p-123", on_progress=events.append)
            return fake, client, result, events

    fake, client, result, events = run_async(scenario())
    assert result == RunResult("p-123", {"9": {"text": ["done"]}})
    # its own client_id, for both the websocket and the prompt; the given prompt_id
    assert fake.ws_client_ids == [client.client_id]
    assert len(fake.prompts) == 1
    assert fake.prompts[0] == {
        "prompt": PROMPT,
        "client_id": client.client_id,
        "prompt_id": "p-123",
    }
    assert ProgressEvent("p-123", "1") in events
    assert ProgressEvent("p-123", "1", 1, 2) in events
    assert all(e.prompt_id == "p-123" for e in events)
    assert fake.interrupts == [] and fake.queue_posts == []


def test_clients_have_their_own_client_ids_and_generate_prompt_ids():
    async def scenario():
        async with FakeComfyUI() as fake:
            async with ComfyUIClient(fake.url) as a, ComfyUIClient(fake.url + "/") as b:
                ra = await a.run(PROMPT)
                rb = await b.run(PROMPT)
            return fake, a, b, ra, rb

    fake, a, b, ra, rb = run_async(scenario())
    assert a.client_id != b.client_id
    assert [p["client_id"] for p in fake.prompts] == [a.client_id, b.client_id]
    assert ra.prompt_id != rb.prompt_id
    assert [p["prompt_id"] for p in fake.prompts] == [ra.prompt_id, rb.prompt_id]
    assert b.base_url == fake.url


def test_concurrent_runs_on_one_client():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            results = await asyncio.gather(
                *(client.run(PROMPT, prompt_id=f"p{i}") for i in range(5))
            )
            return fake, client, results

    fake, client, results = run_async(scenario())
    assert [r.prompt_id for r in results] == [f"p{i}" for i in range(5)]
    assert fake.ws_client_ids == [client.client_id], "one websocket for every run"


def test_prompt_rejected_carries_node_errors():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "reject"
            with pytest.raises(PromptRejected) as info:
                await client.run(PROMPT, prompt_id="p1")
            return info.value, client

    err, client = run_async(scenario())
    assert err.status == 400 and err.exit_code == 2
    assert err.details["node_errors"] == NODE_ERRORS
    assert err.details["error"]["message"] == "Prompt outputs failed validation"
    assert "node 3 (ImageScale): Value not in list" in err.message
    assert "'cubic' not in" in err.message
    assert client._pending == {}, "a rejected prompt leaves nothing pending"


def test_node_errors_in_a_200_answer_reject_the_prompt_and_take_it_back():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "partial"
            with pytest.raises(PromptRejected) as info:
                await client.run(PROMPT, prompt_id="p1", timeout=5)
            return info.value, fake, client

    err, fake, client = run_async(scenario())
    assert err.status == 400 and err.details["node_errors"] == NODE_ERRORS
    assert "node 3 (ImageScale)" in err.message
    assert fake.queue_posts == [{"delete": ["p1"]}], "the queued part is taken back out"
    assert client._pending == {}


def test_execution_failed_keeps_the_traceback_out_of_the_error(caplog):
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "error"
            with pytest.raises(ExecutionFailed) as info:
                await client.run(PROMPT, prompt_id="p1")
            return info.value

    with caplog.at_level("ERROR", logger="comfypack.comfyui.client"):
        err = run_async(scenario())
    assert "traceback" not in err.details and "File x.py" not in json.dumps(err.to_dict())
    assert "File x.py" in caplog.text  # logged for the operator


def test_prompt_http_500_is_a_comfyui_error():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "http500"
            with pytest.raises(ComfyUIError) as info:
                await client.run(PROMPT)
            return info.value

    err = run_async(scenario())
    assert type(err) is ComfyUIError
    assert "answered 500" in err.message


def test_execution_failed_carries_node_id_type_and_message():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "error"
            with pytest.raises(ExecutionFailed) as info:
                await client.run(PROMPT, prompt_id="p1")
            return info.value

    err = run_async(scenario())
    assert err.details["node_id"] == "3"
    assert err.details["node_type"] == "ImageScale"
    assert err.details["exception_type"] == "RuntimeError"
    assert err.details["exception_message"].startswith("boom: tensor sizes differ")
    assert err.message == "node 3 (ImageScale) failed: boom: tensor sizes differ"
    assert err.status == 500


def test_interrupted_is_a_comfyui_error():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "interrupt"
            with pytest.raises(ComfyUIError) as info:
                await client.run(PROMPT)
            return info.value

    err = run_async(scenario())
    assert type(err) is ComfyUIError and "interrupted" in err.message


def test_missing_history_is_an_error():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "nohistory"
            with pytest.raises(ComfyUIError) as info:
                await client.run(PROMPT, prompt_id="p9")
            return info.value

    assert "no history for prompt p9" in run_async(scenario()).message


# -- failure modes: websocket drop, timeout, cancellation, unreachable --------------------------


def test_websocket_drop_fails_the_run_fast():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "drop"
            with pytest.raises(ComfyUIUnavailable) as info:
                # far shorter than any run timeout: the drop itself must end the wait
                await asyncio.wait_for(client.run(PROMPT, timeout=600), 5)
            return info.value

    err = run_async(scenario())
    assert "lost the websocket" in err.message
    assert err.status == 503


def test_websocket_drop_fails_every_run_in_flight_then_reconnects():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "hang"
            runs = [asyncio.create_task(client.run(PROMPT, prompt_id=f"p{i}")) for i in range(3)]
            while len(fake.prompts) < 3:
                fake.prompt_received.clear()
                await fake.prompt_received.wait()
            await fake.drop_websockets()
            outcomes = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 5)
            assert not client.connected
            fake.mode = "ok"
            again = await client.run(PROMPT, prompt_id="after")  # reconnects
            return fake, client, outcomes, again

    fake, client, outcomes, again = run_async(scenario())
    assert [type(o) for o in outcomes] == [ComfyUIUnavailable] * 3
    assert again.prompt_id == "after"
    assert fake.ws_client_ids == [client.client_id, client.client_id]


def test_timeout_cancels_the_prompt():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "hang"
            with pytest.raises(ComfyUIError) as info:
                await client.run(PROMPT, prompt_id="slow", timeout=0.2)
            return fake, client, info.value

    fake, client, err = run_async(scenario())
    assert "did not finish within 0.2 s" in err.message
    assert fake.queue_posts == [{"delete": ["slow"]}]
    assert fake.interrupts == [{"prompt_id": "slow"}]
    assert client._pending == {}


def test_cancelling_the_caller_while_it_waits_interrupts_the_prompt():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "hang"
            queued = asyncio.Event()
            queue_prompt = client.queue_prompt

            async def spy(*args, **kwargs):
                await queue_prompt(*args, **kwargs)
                queued.set()  # run() goes straight on to wait on the websocket

            client.queue_prompt = spy  # type: ignore[method-assign]
            task = asyncio.create_task(client.run(PROMPT, prompt_id="gone"))
            await queued.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return fake, client

    fake, client = run_async(scenario())
    assert fake.interrupts == [{"prompt_id": "gone"}]
    assert fake.queue_posts == [{"delete": ["gone"]}]
    assert client._pending == {}


def test_cancelling_the_caller_while_queueing_still_cancels_the_prompt():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "hang"
            task = asyncio.create_task(client.run(PROMPT, prompt_id="gone"))
            await fake.prompt_received.wait()  # the server has the prompt; the answer is on its way
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return fake

    fake = run_async(scenario())
    assert fake.prompts and fake.prompts[0]["prompt_id"] == "gone"
    assert fake.interrupts == [{"prompt_id": "gone"}]


def test_unreachable_server():
    async def scenario():
        client = ComfyUIClient(f"http://127.0.0.1:{closed_port()}", connect_timeout=2)
        try:
            with pytest.raises(ComfyUIUnavailable) as info:
                await client.run(PROMPT)
            alive = await client.ping()
        finally:
            await client.close()
        return info.value, alive

    err, alive = run_async(scenario())
    assert "cannot reach ComfyUI" in err.message
    assert alive is False


def test_ping_and_get_json():
    async def scenario():
        async with FakeComfyUI() as fake:
            client = ComfyUIClient(fake.url)
            try:
                alive = await client.ping()
                stats = await client.get_json("/system_stats")
                with pytest.raises(ComfyUIError) as info:
                    await client.get_json("/nope")
            finally:
                await client.close()
            return alive, stats, info.value

    alive, stats, err = run_async(scenario())
    assert alive is True
    assert stats["system"]["comfyui_version"] == "0.3.75"
    assert "GET /nope answered 404" in err.message


def test_close_fails_runs_in_flight():
    async def scenario():
        async with FakeComfyUI() as fake:
            client = ComfyUIClient(fake.url)
            fake.mode = "hang"
            task = asyncio.create_task(client.run(PROMPT))
            await fake.prompt_received.wait()
            await client.close()
            with pytest.raises(ComfyUIUnavailable):
                await asyncio.wait_for(task, 5)
            return client

    client = run_async(scenario())
    assert not client.connected


def test_close_closes_the_websocket():
    async def scenario():
        async with FakeComfyUI() as fake:
            client = ComfyUIClient(fake.url)
            await client.run(PROMPT)  # the websocket reader is certainly running now
            ws = client._ws
            assert ws is not None and not ws.closed
            await client.close()
            return ws, client

    ws, client = run_async(scenario())
    assert not client.connected
    assert ws.closed


# -- files ------------------------------------------------------------------------------------------


def test_upload_returns_subfolder_and_name():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            stored = await client.upload(b"\x89PNG data", "run1_image.png", subfolder="sub")
            default = await client.upload(b"x", "b.wav")
            plain = await client.upload(b"y", "c.txt", subfolder="")
            return fake, stored, default, plain

    fake, stored, default, plain = run_async(scenario())
    assert stored == "sub/run1_image.png"
    assert default == "comfypack/b.wav"
    assert plain == "c.txt"
    first = fake.uploads[0]
    assert (
        first["filename"],
        first["data"],
        first["subfolder"],
        first["type"],
        first["overwrite"],
    ) == ("run1_image.png", b"\x89PNG data", "sub", "input", "true")


def test_read_file_via_view():
    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.files["out_00001_.png"] = b"remote bytes"
            data = await client.read_file(FileRef("out_00001_.png", "comfypack/r1", "output"))
            with pytest.raises(ComfyUIError) as info:
                await client.read_file(FileRef("missing.png", "", "temp"))
            return fake, data, info.value

    fake, data, err = run_async(scenario())
    assert data == b"remote bytes"
    assert fake.views[0] == {
        "filename": "out_00001_.png",
        "subfolder": "comfypack/r1",
        "type": "output",
    }
    assert "cannot fetch missing.png" in err.message and "404" in err.message


def test_read_file_from_local_output_dir(tmp_path):
    out = tmp_path / "output"
    (out / "comfypack" / "r1").mkdir(parents=True)
    (out / "comfypack" / "r1" / "a.png").write_bytes(b"local bytes")

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url, output_dir=out) as client:
            fake.files["a.png"] = b"remote bytes"
            data = await client.read_file(FileRef("a.png", "comfypack/r1", "output"))
            return fake, client, data

    fake, client, data = run_async(scenario())
    assert data == b"local bytes"
    assert fake.views == [], "a local file is read from disk, not over HTTP"
    assert (
        client.local_path(FileRef("a.png", "comfypack/r1", "output"))
        == out / "comfypack" / "r1" / "a.png"
    )
    assert client.local_path(FileRef("a.png", "", "temp")) is None


@pytest.mark.parametrize(
    ("filename", "subfolder"),
    [("../secret.txt", ""), ("secret.txt", ".."), ("secret.txt", "../output/../")],
)
def test_read_file_refuses_paths_escaping_the_output_dir(tmp_path, filename, subfolder):
    out = tmp_path / "output"
    out.mkdir()
    (tmp_path / "secret.txt").write_bytes(b"SECRET")

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url, output_dir=out) as client:
            with pytest.raises(ComfyUIError):  # not read from disk; the server has no such file
                await client.read_file(FileRef(filename, subfolder, "output"))
            return fake

    fake = run_async(scenario())
    assert len(fake.views) == 1


def test_read_file_refuses_absolute_names(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET")

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url, output_dir=out) as client:
            fake.files[str(secret)] = b"from server"
            return await client.read_file(FileRef(str(secret), "", "output"))

    assert run_async(scenario()) == b"from server"


def test_file_ref_from_ui():
    assert FileRef.from_ui({"filename": "a.png", "subfolder": "s", "type": "temp"}) == FileRef(
        "a.png", "s", "temp"
    )
    assert FileRef.from_ui({"filename": "a.png"}) == FileRef("a.png", "", "output")
    assert FileRef.from_ui({"filename": "a.png", "subfolder": None, "type": None}) == FileRef(
        "a.png", "", "output"
    )

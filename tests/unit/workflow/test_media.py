"""comfypack.workflow.media: decoding file inputs (bytes, base64, data: URIs, http URLs) into checked bytes."""

from __future__ import annotations

import asyncio
import base64
import http.server
import socket
from urllib.parse import quote

import pytest
from conftest import http_server

from comfypack.errors import InputFetchError
from comfypack.files.urlfetch import UrlPolicy
from comfypack.workflow.media import (
    DEFAULT_MAX_BYTES,
    InputLimits,
    MediaFile,
    Upload,
    decode_media,
    sniff,
)

from .._helpers import FLAC_MAGIC, MP4_MAGIC, WEBM_MAGIC, png_bytes, png_header_only, wav_bytes

PNG = png_bytes()
#: the test server is on 127.0.0.1, which URL inputs refuse by default: allow it, as an operator would
LOCAL = InputLimits(url=UrlPolicy(*UrlPolicy.parse_allow("127.0.0.1/32")))


def decode(kind, value, field="image", **kw) -> MediaFile:
    return asyncio.run(decode_media(kind, value, field, **kw))


def decode_error(kind, value, field="image", **kw) -> InputFetchError:
    with pytest.raises(InputFetchError) as info:
        decode(kind, value, field, **kw)
    err = info.value
    assert err.fields == [field], err.details
    assert err.message.startswith(f"{field}: ")
    assert err.type == "input_error"
    return err


# -- a local HTTP server: it stands in for "the internet" for URL inputs -------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        status, headers, body = self.routes.get(self.path.split("?")[0], (404, {}, b"not found"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web():
    _Handler.routes = {
        "/pic.png": (200, {"Content-Type": "image/png"}, PNG),
        "/docs/report%20final.pdf": (200, {}, b"%PDF-1.4 fake"),
        "/big.bin": (200, {}, b"x" * 5000),
        "/text.txt": (200, {}, b"not an image"),
        "/moved": (302, {"Location": "/pic.png"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/forbidden": (403, {}, b"no"),
    }
    with http_server(_Handler) as url:
        yield url


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/pic.png"  # nothing listens there now


# -- bytes / base64 / data: -----------------------------------------------------------------


def test_bytes():
    media = decode("image", PNG)
    assert media == MediaFile(PNG, "image.png", "image/png")


def test_bytearray_and_upload():
    assert decode("image", bytearray(PNG)).data == PNG
    media = decode("file", Upload(b"a,b\n1,2\n", "table.csv"), "doc")
    assert (media.data, media.filename, media.media_type) == (b"a,b\n1,2\n", "doc.csv", "text/csv")


def test_plain_base64_with_whitespace_and_missing_padding():
    text = base64.b64encode(PNG).decode()
    assert decode("image", text).data == PNG
    wrapped = "\n".join(text[i : i + 60] for i in range(0, len(text), 60))
    assert decode("image", f"  {wrapped}\n").data == PNG
    assert decode("file", "aGVsbG8", "doc").data == b"hello"  # "hello" without its "=" padding


def test_data_uri_base64():
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    media = decode("image", uri)
    assert (media.data, media.media_type, media.filename) == (PNG, "image/png", "image.png")


def test_data_uri_with_params_and_percent_encoded_text():
    uri = "data:image/png;name=x.png;base64," + base64.b64encode(PNG).decode()
    assert decode("image", uri).data == PNG
    assert (
        decode("file", "data:text/plain," + quote("hi there/ü"), "doc").data
        == "hi there/ü".encode()
    )


def test_malformed_data_uri():
    err = decode_error("image", "data:image/png;base64")  # no comma
    assert "malformed data: URI" in err.message


@pytest.mark.parametrize("text", ["not base64 !!!", "a", "@@@@"])
def test_bad_base64(text):
    err = decode_error("image", text)
    assert "not valid base64" in err.message
    assert err.status == 422


def test_not_a_value():
    err = decode_error("image", 12)
    assert "must be a file upload" in err.message


# -- URLs -----------------------------------------------------------------------------------


def test_http_url(web):
    media = decode("image", f"{web}/pic.png", limits=LOCAL)
    assert media == MediaFile(PNG, "image.png", "image/png")


def test_http_url_follows_redirects(web):
    assert decode("image", f"{web}/moved", limits=LOCAL).data == PNG


def test_http_url_file_kind_keeps_extension_from_url(web):
    media = decode("file", f"{web}/docs/report%20final.pdf", "doc", limits=LOCAL)
    assert (media.data, media.filename, media.media_type) == (
        b"%PDF-1.4 fake",
        "doc.pdf",
        "application/pdf",
    )


@pytest.mark.parametrize("path", ["/nope.png", "/forbidden"])
def test_http_url_non_200(web, path):
    err = decode_error("image", f"{web}{path}", limits=LOCAL)
    assert "answered HTTP 40" in err.message
    assert err.status == 422


def test_http_url_redirect_to_file_scheme_is_refused(web):
    err = decode_error("image", f"{web}/to-file", limits=LOCAL)
    assert err.status == 422
    assert "non-http(s)" in err.message, err.message


def test_unreachable_url():
    err = decode_error("image", closed_port_url(), limits=LOCAL)
    assert "cannot fetch" in err.message and "connection failed" in err.message


def test_oversize_url(web):
    err = decode_error("file", f"{web}/big.bin", "doc", max_bytes=1000, limits=LOCAL)
    assert err.status == 413
    assert "larger than 1000 bytes" in err.message


def test_url_body_that_is_not_an_image(web):
    err = decode_error("image", f"{web}/text.txt", limits=LOCAL)
    assert "not a readable image" in err.message


# -- limits and refused schemes -----------------------------------------------------------------


def test_oversize_bytes_and_base64():
    assert decode_error("image", PNG, max_bytes=10).status == 413
    assert decode_error("image", base64.b64encode(PNG).decode(), max_bytes=10).status == 413
    assert decode("image", PNG, max_bytes=len(PNG)).data == PNG  # exactly at the limit is fine
    assert DEFAULT_MAX_BYTES == 100 * 1024 * 1024


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://x/1",
        "s3://bucket/key.png",
        "javascript:alert(1)",
    ],
)
def test_other_schemes_are_refused(url):
    err = decode_error("image", url)
    assert "is not allowed" in err.message
    assert err.status == 422


def test_empty_input():
    assert "is empty" in decode_error("file", b"", "doc").message
    assert "is empty" in decode_error("image", "").message


# -- sniffing -------------------------------------------------------------------------------------


def test_not_an_image():
    err = decode_error("image", b"GIF? no, just text")
    assert "not a readable image" in err.message


def test_truncated_image():
    err = decode_error("image", PNG[: len(PNG) // 2])
    assert "not a readable image" in err.message


def test_decompression_bomb_is_a_client_error():
    """A tiny PNG header claiming 10^10 pixels must be refused as a bad input, not crash (500)."""
    err = decode_error("image", png_header_only(100_000, 100_000))
    assert err.status in (413, 422)


def test_image_formats():
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="JPEG")
    media = decode("image", buf.getvalue())
    assert (media.filename, media.media_type) == ("image.jpg", "image/jpeg")


@pytest.mark.parametrize(
    ("data", "media_type", "ext"),
    [
        (wav_bytes(), "audio/wav", ".wav"),
        (FLAC_MAGIC, "audio/flac", ".flac"),
        (b"OggS\x00\x02" + b"\x00" * 20, "audio/ogg", ".ogg"),
        (b"ID3\x04\x00" + b"\x00" * 20, "audio/mpeg", ".mp3"),
        (MP4_MAGIC, "audio/mp4", ".m4a"),
    ],
)
def test_audio_sniffing(data, media_type, ext):
    media = decode("audio", data, "voice")
    assert (media.media_type, media.filename) == (media_type, f"voice{ext}")


@pytest.mark.parametrize(
    ("data", "media_type", "ext"),
    [
        (MP4_MAGIC, "video/mp4", ".mp4"),
        (WEBM_MAGIC, "video/webm", ".webm"),
        (b"GIF89a" + b"\x00" * 20, "image/gif", ".gif"),
    ],
)
def test_video_sniffing(data, media_type, ext):
    media = decode("video", data, "clip")
    assert (media.media_type, media.filename) == (media_type, f"clip{ext}")


def test_audio_and_video_refuse_other_bytes():
    assert "not a recognised audio file" in decode_error("audio", PNG, "voice").message
    assert "not a recognised video file" in decode_error("video", b"hello world", "clip").message
    assert "not a recognised video file" in decode_error("video", FLAC_MAGIC, "clip").message


def test_sniff_directly():
    assert sniff("audio", FLAC_MAGIC, "a") == ("audio/flac", ".flac")
    assert sniff("file", b"anything", "a") == ("application/octet-stream", "")


# -- file kind and names ----------------------------------------------------------------------


def test_file_kind_keeps_the_filename_extension():
    media = decode("file", b"hello", "attachment", filename="notes.txt")
    assert (media.filename, media.media_type) == ("attachment.txt", "text/plain")
    media = decode("file", b"\x00\x01", "attachment", filename="archive.tar.gz")
    assert media.filename == "attachment.gz"


def test_file_kind_without_a_name():
    media = decode("file", b"hello", "attachment")
    assert (media.filename, media.media_type) == ("attachment", "application/octet-stream")
    assert decode("file", b"hello", "attachment", filename="README").filename == "attachment"


@pytest.mark.parametrize(
    "filename", ["a.b/../c", "x.png/../../etc/passwd", "x.p\\..\\y", "evil.a b", "z." + "e" * 40]
)
def test_client_file_names_cannot_smuggle_paths(filename):
    """The stored name is ours (the field name) plus a plain extension, whatever the client sent."""
    media = decode("file", Upload(b"data", filename), "doc")
    assert "/" not in media.filename and "\\" not in media.filename and " " not in media.filename
    assert media.filename.startswith("doc")
    assert len(media.filename) <= len("doc") + 17


def test_field_name_is_sanitised_in_the_file_name():
    assert decode("image", PNG, "my field/..").filename == "my_field_...png"

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from nfaas.errors import IntegrityError, PackageError
from nfaas.packages.fetch import fetch_code

CODE = b"(module)" * 100
SHA256 = "sha256:" + hashlib.sha256(CODE).hexdigest()
SHA512 = "sha512:" + hashlib.sha512(CODE).hexdigest()
URL = "https://code.example/fn.wat"


def _client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


def _serving(body: bytes, status: int = 200, **headers: str) -> httpx.AsyncClient:
    return _client(
        httpx.MockTransport(lambda request: httpx.Response(status, content=body, headers=headers))
    )


async def test_downloads_and_checks_sha256() -> None:
    async with _serving(CODE) as client:
        assert await fetch_code(URL, SHA256, 10_000, client) == CODE


async def test_sha512_and_upper_case_hex() -> None:
    async with _serving(CODE) as client:
        assert (
            await fetch_code(URL, SHA512.upper().replace("SHA512", "sha512"), 10_000, client)
            == CODE
        )


async def test_follows_redirects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(302, headers={"location": URL})
        return httpx.Response(200, content=CODE)

    async with _client(httpx.MockTransport(handler)) as client:
        assert await fetch_code("https://code.example/old", SHA256, 10_000, client) == CODE


async def test_hash_mismatch_names_the_url() -> None:
    async with _serving(b"something else") as client:
        with pytest.raises(
            IntegrityError, match=f"code downloaded from {URL}: sha256 digest mismatch"
        ) as info:
            await fetch_code(URL, SHA256, 10_000, client)
    assert info.value.extra["expected"] == SHA256.removeprefix("sha256:")


async def test_http_error_status() -> None:
    async with _serving(b"nope", status=404) as client:
        with pytest.raises(PackageError, match=f"downloading {URL}: HTTP 404"):
            await fetch_code(URL, SHA256, 10_000, client)


async def test_announced_size_over_the_cap() -> None:
    async with _serving(CODE) as client:
        with pytest.raises(
            PackageError, match=f"downloading {URL}: 800 bytes announced, over the limit of 100"
        ):
            await fetch_code(URL, SHA256, 100, client)


async def test_streamed_size_over_the_cap_without_content_length() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 4096

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    async with _client(transport) as client:
        with pytest.raises(
            PackageError, match=f"downloading {URL}: more than the limit of 65536 bytes"
        ):
            await fetch_code(URL, SHA256, 65536, client)


async def test_connection_failure_names_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with _client(httpx.MockTransport(refuse)) as client:
        with pytest.raises(PackageError, match=f"downloading {URL} failed: connection refused"):
            await fetch_code(URL, SHA256, 10_000, client)


async def test_overall_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, content=CODE)

    async with _client(httpx.MockTransport(slow)) as client:
        with pytest.raises(PackageError, match=f"downloading {URL} took longer than 0.05 s"):
            await fetch_code(URL, SHA256, 10_000, client, timeout_s=0.05)


@pytest.mark.parametrize(
    "expected", ["md5:abc", "sha256:abc", "sha256", "sha512:" + "0" * 64, "sha256:" + "g" * 64]
)
async def test_malformed_expected_hash(expected: str) -> None:
    with pytest.raises(PackageError, match=f"code hash .* for {URL} is not"):
        await fetch_code(URL, expected, 10_000)


class _CodeHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(CODE)))
        self.end_headers()
        self.wfile.write(CODE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CodeHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fn.wat"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_real_server_with_its_own_client(
    local_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    assert await fetch_code(local_server, SHA256, 10_000) == CODE


async def test_private_and_loopback_destinations_are_refused() -> None:
    from nfaas.packages.fetch import public_destinations_only

    for url in (
        "http://127.0.0.1:8080/x.wasm",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
    ):
        with pytest.raises(PackageError, match="non-public address"):
            await public_destinations_only(url)


async def test_a_redirect_to_a_private_address_is_refused_before_it_is_followed() -> None:
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(302, headers={"location": "http://127.0.0.1/secret"})

    async def only_example(url: str) -> None:
        if "code.example" not in url:
            raise PackageError(f"refused {url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(PackageError, match=re.escape("refused http://127.0.0.1/secret")):
            await fetch_code("https://code.example/x", SHA256, 10_000, client, check=only_example)
    assert requested == ["https://code.example/x"]

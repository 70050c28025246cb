"""Downloading function code a descriptor references by URL.

EVE025 7.2.4 lets a function descriptor give "a downloading URL" instead of
carrying the code, and 5.2.6 step 2 has onboarding download it and store it.
The download is streamed with a size cap and an overall deadline, and checked
against the descriptor's ``hash`` before anyone uses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from nfaas.errors import IntegrityError, PackageError

_ALGORITHMS = {"sha256": 64, "sha512": 128}
MAX_REDIRECTS = 5

#: decides whether a URL may be fetched; raises PackageError if not
DestinationCheck = Callable[[str], Awaitable[None]]


async def public_destinations_only(url: str) -> None:
    """Refuse a URL whose host resolves to a loopback, private, link-local or reserved address.

    Onboarding runs on the operator's node: without this, a package could make it
    fetch from the node's own services or its management network (server-side
    request forgery). Every redirect hop is checked. (A name that resolves
    differently between this check and the connection is not caught.)
    """
    host = urlsplit(url).hostname
    if not host:
        raise PackageError(f"code URL {url} has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PackageError(f"code URL {url}: cannot resolve {host}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise PackageError(
                f"code URL {url} points at {address}, a non-public address; this node only "
                "downloads code from public addresses (allow_private_code_urls to change it)"
            )


async def fetch_code(
    url: str,
    expected: str,
    max_bytes: int,
    client: httpx.AsyncClient | None = None,
    *,
    timeout_s: float = 120.0,
    check: DestinationCheck | None = None,
) -> bytes:
    """The bytes at ``url``, once their digest equals ``expected`` (``sha256:<hex>``).

    Raises ``PackageError`` when the download fails, is not HTTP 200, exceeds
    ``max_bytes`` or ``timeout_s``; ``IntegrityError`` when the digest differs.
    Every message names the URL. A given ``client`` is used and left open.
    ``check`` vets the URL and every redirect before it is requested.
    """
    algorithm, _, want = expected.partition(":")
    if _ALGORITHMS.get(algorithm) != len(want) or not re.fullmatch(r"[0-9a-fA-F]+", want):
        raise PackageError(
            f"code hash {expected!r} for {url} is not 'sha256:<64 hex>' or 'sha512:<128 hex>'"
        )
    try:
        async with asyncio.timeout(timeout_s):
            if client is not None:
                data = await _download(client, url, max_bytes, check)
            else:
                async with httpx.AsyncClient(timeout=30.0) as own:
                    data = await _download(own, url, max_bytes, check)
    except TimeoutError as exc:
        raise PackageError(f"downloading {url} took longer than {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise PackageError(f"downloading {url} failed: {exc or type(exc).__name__}") from exc
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != want.lower():
        raise IntegrityError(
            f"code downloaded from {url}: {algorithm} digest mismatch: the descriptor says "
            f"{want.lower()}, the download has {actual}",
            url=url,
            algorithm=algorithm,
            expected=want.lower(),
            actual=actual,
        )
    return data


async def _download(
    client: httpx.AsyncClient, url: str, max_bytes: int, check: DestinationCheck | None
) -> bytes:
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        if check is not None:
            await check(target)
        async with client.stream("GET", target, follow_redirects=False) as response:
            if response.is_redirect and "location" in response.headers:
                target = str(response.url.join(response.headers["location"]))
                continue
            return await _body(response, url, max_bytes)
    raise PackageError(f"downloading {url}: more than {MAX_REDIRECTS} redirects")


async def _body(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    if response.status_code != 200:
        raise PackageError(f"downloading {url}: HTTP {response.status_code}")
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PackageError(
            f"downloading {url}: {declared} bytes announced, over the limit of {max_bytes}"
        )
    buffer = bytearray()
    # aiter_bytes decodes any Content-Encoding, so the cap counts real bytes
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) > max_bytes:
            raise PackageError(f"downloading {url}: more than the limit of {max_bytes} bytes")
    return bytes(buffer)

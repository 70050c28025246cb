"""Downloading function code a descriptor references by URL.

EVE025 7.2.4 lets a function descriptor give "a downloading URL" instead of
carrying the code, and 5.2.6 step 2 has onboarding download it and store it.
The download is streamed with a size cap and an overall deadline, and checked
against the descriptor's ``hash`` before anyone uses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

import httpx

from nfaas.errors import IntegrityError, PackageError

_ALGORITHMS = {"sha256": 64, "sha512": 128}


async def fetch_code(
    url: str,
    expected: str,
    max_bytes: int,
    client: httpx.AsyncClient | None = None,
    *,
    timeout_s: float = 120.0,
) -> bytes:
    """The bytes at ``url``, once their digest equals ``expected`` (``sha256:<hex>``).

    Raises ``PackageError`` when the download fails, is not HTTP 200, exceeds
    ``max_bytes`` or ``timeout_s``; ``IntegrityError`` when the digest differs.
    Every message names the URL. A given ``client`` is used and left open.
    """
    algorithm, _, want = expected.partition(":")
    if _ALGORITHMS.get(algorithm) != len(want) or not re.fullmatch(r"[0-9a-fA-F]+", want):
        raise PackageError(
            f"code hash {expected!r} for {url} is not 'sha256:<64 hex>' or 'sha512:<128 hex>'"
        )
    try:
        async with asyncio.timeout(timeout_s):
            if client is not None:
                data = await _download(client, url, max_bytes)
            else:
                async with httpx.AsyncClient(timeout=30.0) as own:
                    data = await _download(own, url, max_bytes)
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


async def _download(client: httpx.AsyncClient, url: str, max_bytes: int) -> bytes:
    async with client.stream("GET", url, follow_redirects=True) as response:
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

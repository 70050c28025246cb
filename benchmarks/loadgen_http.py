"""HTTP load generator in Python, used when ``wrk`` is not installed.

Runs in its own process (``python loadgen_http.py URL --connections C --duration S``)
against loopback only: C keep-alive HTTP/1.1 connections, each sending one
POST and reading its answer before the next (as wrk does), for ``--warmup``
seconds unmeasured, then ``--duration`` seconds measured. Prints one JSON
object in the shape ``http_load.py`` reads from wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from typing import Any
from urllib.parse import urlsplit

import uvloop


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def connection(
    host: str, port: int, request: bytes, measure_from: float, stop_at: float,
    latencies: list[float], counts: dict[str, int],
) -> None:  # fmt: skip
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        counts["connect"] += 1
        return
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if started >= measure_from:
                latencies.append(time.perf_counter() - started)
                if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                    counts["status"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        counts["read"] += 1
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = args.body.encode()
    request = (
        f"POST {url.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    measure_from = time.perf_counter() + args.warmup
    stop_at = measure_from + args.duration
    latencies: list[float] = []
    counts = {"connect": 0, "read": 0, "status": 0}
    await asyncio.wait_for(
        asyncio.gather(
            *(
                connection(host, port, request, measure_from, stop_at, latencies, counts)
                for _ in range(args.connections)
            )
        ),
        args.warmup + args.duration + 30,
    )
    ordered = sorted(latencies)
    us = 1_000_000.0
    return {
        "requests": len(ordered),
        "duration_us": args.duration * us,
        "connect": counts["connect"],
        "read": counts["read"],
        "write": 0,
        "status": counts["status"],
        "timeout": 0,
        "p50": percentile(ordered, 50) * us,
        "p90": percentile(ordered, 90) * us,
        "p99": percentile(ordered, 99) * us,
        "mean": (sum(ordered) / len(ordered) * us) if ordered else math.nan,
        "max": (ordered[-1] * us) if ordered else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--body", default="ping")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    if not 1 <= args.connections <= 1024 or args.duration > 120:
        parser.error("1-1024 connections, at most 120 s")
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()

"""Floor of the UDP figures: a bare asyncio UDP echo server on uvloop.

``python floors/udp_echo.py PORT``; it stops on SIGTERM, or by itself after
``MAX_LIFETIME_S``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import uvloop

MAX_LIFETIME_S = 900.0


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not registered as an asyncio.DatagramTransport
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(data, addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    try:
        await asyncio.wait_for(stop.wait(), MAX_LIFETIME_S)
    except TimeoutError:
        pass
    finally:
        transport.close()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))

"""The host's side of a microVM's first moments: its port, its state, its clock.

A restored VM: ``connect_port`` before the guest runs (so it finds its host
connected, as the template had it), ``migrate_in`` feeds QEMU the snapshot's
device state, then ``hello`` wakes the agent and measures the guest's clock
against the host's. A booted VM: ``connect_port``, ``expect_booted``, ``hello``.
Every frame here is a small one of the agent's handshake, read on a raw
non-blocking socket before the worker protocol's stream takes it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

from qemu.qmp import QMPError

from nfaas.errors import SandboxError, SandboxStartError
from nfaas.sandboxes.microvm.qemu import Vm, qmp_session
from nfaas.sandboxes.protocol import HEADER, Message, pack, unpack

#: handshake frames are small; anything larger is garbage
MAX_HANDSHAKE_FRAME = 4096
#: fresh random bytes for a restored guest's generators
ENTROPY_BYTES = 64


async def connect_port(vm: Vm) -> socket.socket:
    """The VM's port, connected before its state arrives (so the guest finds its host there)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 10
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, str(vm.channel))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        assert vm.ended is not None
        if vm.ended.done():
            raise SandboxStartError(f"QEMU ended at start: {vm.describe_failure()}")
        if time.monotonic() > deadline:
            raise SandboxStartError("QEMU did not open the VM's port within 10 s")
        await asyncio.sleep(0.002)


async def migrate_in(vm: Vm, state_fd: int, timeout_s: float) -> None:
    """Feed the VM its device state: ``state_fd`` was passed to QEMU at its start."""
    qmp = await qmp_session(vm, timeout_s)
    try:
        await qmp.execute(
            "migrate-set-capabilities",
            {"capabilities": [{"capability": "x-ignore-shared", "state": True}]},
        )
        await qmp.execute("migrate-incoming", {"uri": f"fd:{state_fd}"})
    except QMPError as exc:  # QEMU refused, or ended under the session
        raise SandboxStartError(
            f"restoring the snapshot failed: {exc!r}; {vm.describe_failure()}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await qmp.disconnect()


async def expect_booted(sock: socket.socket, timeout_s: float) -> None:
    """A freshly booted guest's first words: the worker's ``ready``, the agent's ``booted``."""
    loop = asyncio.get_running_loop()
    for expected in ("ready", "booted"):
        try:
            async with asyncio.timeout(timeout_s):
                reply = await _recv_frame(loop, sock)
        except TimeoutError as exc:
            raise SandboxStartError(
                f"the microVM guest was not ready within {timeout_s:g} s"
            ) from exc
        if reply.get("op") != expected:
            raise SandboxError(f"protocol violation: {reply.get('op')!r} instead of {expected!r}")


async def _recv_frame(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Message:
    """One small frame of the agent's handshake (never more than 4 kB)."""
    (length,) = HEADER.unpack(await _recv_exactly(loop, sock, HEADER.size))
    if length > MAX_HANDSHAKE_FRAME:
        raise SandboxError(f"protocol violation: a {length}-byte handshake frame")
    return unpack(await _recv_exactly(loop, sock, length))


#: clock samples at ``hello``: at least 3; more while the best round trip is over 1.5 ms
HELLO_SAMPLES = (3, 12)
GOOD_ROUND_TRIP_S = 0.0015


async def hello(sock: socket.socket, max_frame: int) -> float:
    """Wake the restored agent; returns the host's monotonic clock minus the guest's.

    The guest reads its clock between the host's send and receive, so the midpoint
    is within half the round trip; the sample with the shortest round trip wins. The
    first answers of a restored guest are slow (nothing of it is translated yet, under
    TCG), and a busy host delays some: it asks again until one round trip is short.
    """
    loop = asyncio.get_running_loop()
    fewest, most = HELLO_SAMPLES
    best: tuple[float, float] = (float("inf"), 0.0)
    for n in range(1, most + 1):
        last = n == most or (n >= fewest and best[0] <= GOOD_ROUND_TRIP_S)
        hello: Message = {"op": "hello", "id": n, "max_frame": max_frame, "last": last}
        if last:  # the guest reseeds its random state with it (it resumed the template's)
            hello["entropy"] = os.urandom(ENTROPY_BYTES)
        sent = time.monotonic()
        await loop.sock_sendall(sock, pack(hello))
        reply = await _recv_frame(loop, sock)
        received = time.monotonic()
        if reply.get("op") != "hello" or not isinstance(reply.get("monotonic"), float):
            raise SandboxError(f"protocol violation: {reply.get('op')!r} instead of 'hello'")
        best = min(best, (received - sent, (sent + received) / 2 - float(reply["monotonic"])))
        if last:
            break
    return best[1]


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise SandboxError("the guest closed its port")
        data.extend(chunk)
    return bytes(data)

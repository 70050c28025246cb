"""The worker protocol: how the platform talks to the worker that runs one function.

The process backend speaks it over a socketpair to a forked child; the
container backend over a socketpair passed into the container, and the microVM
backend over a virtio-serial port, to the same worker. So this module knows frames and messages, not
transports: an asyncio ``StreamReader``/``StreamWriter`` on the platform side,
a plain blocking socket on the worker side.

A frame is a 4-byte big-endian length, then that many bytes of msgpack: one
map whose ``op`` names the message. Never pickle: the worker runs untrusted
code, and the platform must not execute whatever that code chooses to send.
Frames over ``max_frame`` bytes are refused on both sides.

Platform -> worker::

    hello    id, last, and with the last: entropy, max_frame    microVMs only: zero
             or more before ``load``, each answered with the worker's clock
    load     id, path, handler ("module:function"), env, limits {memory_mb, cpu,
             timeout_s, concurrency}, app, name, version, instance_id, and
             scratch (the instance's private writable folder) if it has one;
             files {relative path: bytes} where the worker cannot see the host's
             disk (a microVM): written into ``path`` before the import
    invoke   id, trigger, body, meta, deadline (time.monotonic() on the worker)

Where the transport can pass descriptors (the process backend's socketpair),
the first bytes of the ``load`` frame carry one (SCM_RIGHTS): the code folder,
opened by the platform, so that an unprivileged worker reads code it could not
reach by ``path``.

Worker -> platform::

    ready       pid, namespaces           when a prepared worker is up (again after
                                          the last hello); and scratch, if a
                                          folder was made for it
    hello       id, monotonic             the worker's clock, to a hello
    loaded      id
    load_error  id, type, message, traceback
    result      id, body, content_type, first_line_at
    error       id, kind ("raised" or "oom"), type, message, traceback

Every request carries an ``id`` and its answer repeats it, so a worker with
concurrency above one can answer invocations out of order.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from nfaas.errors import EventTooLarge, SandboxError

if TYPE_CHECKING:
    import asyncio

    from nfaas.sandboxes.base import Event, FunctionCode

Message = dict[str, Any]

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_OPTIONAL_NUMBER = (int, float, type(None))
#: descriptors a frame may carry; the kernel closes any past these
MAX_FDS = 4

#: the fields each worker -> platform message must carry, with their types
REPLY_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ready": {"pid": int, "namespaces": list},
    "loaded": {"id": int},
    "load_error": {"id": int, "type": str, "message": str, "traceback": str},
    "result": {"id": int, "body": bytes, "content_type": str, "first_line_at": _OPTIONAL_NUMBER},
    "error": {"id": int, "kind": str, "type": str, "message": str, "traceback": str},
}
ERROR_KINDS = frozenset({"raised", "oom"})


def pack(message: Mapping[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame holding ``message``; raises ``EventTooLarge`` past ``max_frame``."""
    try:
        payload: bytes = msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SandboxError(f"cannot encode a {message.get('op')!r} message: {exc}") from exc
    if len(payload) > max_frame:
        raise EventTooLarge(
            f"a {message.get('op')!r} frame of {len(payload)} bytes is over the "
            f"{max_frame}-byte limit",
            size=len(payload),
            limit=max_frame,
        )
    return HEADER.pack(len(payload)) + payload


def unpack(payload: bytes | bytearray) -> Message:
    """The message in one frame's payload; raises ``SandboxError`` if it is not one."""
    try:
        message = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises a family of ValueError subclasses and more
        raise SandboxError(f"protocol violation: undecodable frame ({exc})") from exc
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise SandboxError("protocol violation: a frame that is not a message")
    return message


def _frame_length(header: bytes | bytearray, max_frame: int) -> int:
    (length,) = HEADER.unpack(header)
    if length > max_frame:
        raise SandboxError(
            f"protocol violation: a frame of {length} bytes is over the {max_frame}-byte limit"
        )
    return int(length)


def check_reply(message: Message) -> Message:
    """``message`` if it is a well-formed worker -> platform message, else ``SandboxError``.

    The worker runs the function's code, so nothing it sends is trusted.
    """
    op = message["op"]
    fields = REPLY_FIELDS.get(op)
    if fields is None:
        raise SandboxError(f"protocol violation: unknown message {op!r}")
    for name, kind in fields.items():
        value = message.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise SandboxError(f"protocol violation: {op!r} message with a bad {name!r} field")
    if op == "error" and message["kind"] not in ERROR_KINDS:
        raise SandboxError(f"protocol violation: unknown error kind {message['kind']!r}")
    return message


# -- platform side (asyncio streams) -----------------------------------------------


async def read_message(reader: asyncio.StreamReader, max_frame: int) -> Message | None:
    """The next message, or None at a clean end of stream; ``SandboxError`` if broken."""
    try:
        header = await reader.readexactly(HEADER.size)
    except EOFError as exc:  # asyncio.IncompleteReadError
        if getattr(exc, "partial", b""):
            raise SandboxError("protocol violation: stream ended inside a frame header") from exc
        return None
    length = _frame_length(header, max_frame)
    try:
        payload = await reader.readexactly(length)
    except EOFError as exc:
        raise SandboxError("protocol violation: stream ended inside a frame") from exc
    return unpack(payload)


def write_message(writer: asyncio.StreamWriter, message: Mapping[str, Any], max_frame: int) -> None:
    """Queue one message on ``writer``; the caller drains."""
    writer.write(pack(message, max_frame))


def load_message(
    request_id: int, code: FunctionCode, instance_id: str, env: Message, scratch: str | None = None
) -> Message:
    limits = code.limits
    message: Message = {
        "op": "load",
        "id": request_id,
        "path": str(code.path),
        "handler": code.handler,
        "env": env,
        "limits": {
            "memory_mb": limits.memory_mb,
            "cpu": limits.cpu,
            "timeout_s": limits.timeout_s,
            "concurrency": limits.concurrency,
        },
        "app": code.app,
        "name": code.name,
        "version": code.version,
        "instance_id": instance_id,
    }
    if scratch is not None:
        message["scratch"] = scratch
    return message


def invoke_message(request_id: int, event: Event, deadline: float) -> Message:
    return {
        "op": "invoke",
        "id": request_id,
        "trigger": event.trigger,
        "body": event.body,
        "meta": event.meta,
        "deadline": deadline,
    }


# -- worker side (a blocking socket) -----------------------------------------------


def _recv_exactly(sock: socket.socket, size: int, fds: list[int] | None = None) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        if fds is not None and got == 0:
            n, ancillary, _, _ = sock.recvmsg_into(
                [view], socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
            )
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    whole = len(data) - len(data) % 4  # C ints, 4 bytes each
                    fds.extend(struct.unpack(f"{whole // 4}i", data[:whole]))
        else:
            n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return buffer


def recv_message(
    sock: socket.socket, max_frame: int, fds: list[int] | None = None
) -> Message | None:
    """The next message, or None when the platform has gone; ``SandboxError`` if broken.

    With ``fds`` (a list), descriptors that came with the frame are appended to
    it, close-on-exec; without, the kernel closes any that came.
    """
    header = _recv_exactly(sock, HEADER.size, fds)
    if header is None:
        return None
    payload = _recv_exactly(sock, _frame_length(header, max_frame))
    if payload is None:
        raise SandboxError("protocol violation: stream ended inside a frame")
    return unpack(payload)


def send_message(sock: socket.socket, message: Mapping[str, Any], max_frame: int) -> None:
    """Send one message; ``EventTooLarge`` (nothing sent) when it does not fit a frame."""
    sock.sendall(pack(message, max_frame))

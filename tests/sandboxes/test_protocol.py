from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from nfaas.errors import EventTooLarge, SandboxError
from nfaas.sandboxes.base import Event, FunctionCode, Limits
from nfaas.sandboxes.protocol import (
    HEADER,
    check_reply,
    invoke_message,
    load_message,
    pack,
    read_message,
    recv_message,
    send_message,
    unpack,
)

BODY = bytes(range(256)) * 4


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def test_frame_is_a_big_endian_length_then_msgpack() -> None:
    frame = pack({"op": "loaded", "id": 7})
    (length,) = HEADER.unpack(frame[: HEADER.size])
    assert length == len(frame) - HEADER.size
    assert msgpack.unpackb(frame[HEADER.size :]) == {"op": "loaded", "id": 7}


def test_bytes_stay_bytes_and_text_stays_text() -> None:
    message = {"op": "result", "id": 1, "body": BODY, "content_type": "text/plain"}
    assert unpack(pack(message)[HEADER.size :]) == message


def test_pack_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(EventTooLarge) as info:
        pack({"op": "invoke", "body": b"x" * 2000}, max_frame=1000)
    assert info.value.extra["limit"] == 1000
    assert info.value.extra["size"] > 1000


def test_pack_refuses_what_msgpack_cannot_carry() -> None:
    with pytest.raises(SandboxError, match="cannot encode"):
        pack({"op": "invoke", "meta": {"when": object()}})


@pytest.mark.parametrize("payload", [b"\xc1", b"\x92\x01\x02", msgpack.packb({"id": 1})])
def test_unpack_refuses_what_is_not_a_message(payload: bytes) -> None:
    with pytest.raises(SandboxError, match="protocol violation"):
        unpack(payload)


async def test_read_message_reads_frames_in_order_then_none() -> None:
    reader = reader_of(pack({"op": "loaded", "id": 1}) + pack({"op": "loaded", "id": 2}))
    first = await read_message(reader, 1024)
    second = await read_message(reader, 1024)
    assert [first, second] == [{"op": "loaded", "id": 1}, {"op": "loaded", "id": 2}]
    assert await read_message(reader, 1024) is None


async def test_read_message_refuses_an_oversized_frame_from_its_header() -> None:
    reader = reader_of(HEADER.pack(10_000_000))  # no payload follows: it must not wait for one
    with pytest.raises(SandboxError, match="over the 1024-byte limit"):
        await read_message(reader, 1024)


@pytest.mark.parametrize("cut", [2, HEADER.size + 3])
async def test_read_message_refuses_a_truncated_frame(cut: int) -> None:
    frame = pack({"op": "loaded", "id": 1})
    with pytest.raises(SandboxError, match="ended inside"):
        await read_message(reader_of(frame[:cut]), 1024)


def test_socket_side_round_trip(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    message = {"op": "invoke", "id": 3, "body": BODY, "meta": {"peer": ["10.0.0.1", 9001]}}
    send_message(a, message, 4096)
    assert recv_message(b, 4096) == message
    a.close()
    assert recv_message(b, 4096) is None


def test_socket_side_refuses_an_oversized_frame(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(HEADER.pack(1 << 30))
    with pytest.raises(SandboxError, match="over the 4096-byte limit"):
        recv_message(b, 4096)


def test_send_message_sends_nothing_when_too_large(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    with pytest.raises(EventTooLarge):
        send_message(a, {"op": "result", "body": b"x" * 5000}, 4096)
    send_message(a, {"op": "loaded", "id": 1}, 4096)
    assert recv_message(b, 4096) == {"op": "loaded", "id": 1}


GOOD_REPLIES: list[dict[str, Any]] = [
    {"op": "ready", "pid": 10, "namespaces": ["ipc", "uts"]},
    {"op": "loaded", "id": 0},
    {"op": "load_error", "id": 0, "type": "SyntaxError", "message": "m", "traceback": ""},
    {"op": "result", "id": 1, "body": b"", "content_type": "text/plain", "first_line_at": 1.5},
    {"op": "result", "id": 1, "body": b"", "content_type": "text/plain", "first_line_at": None},
    {"op": "error", "id": 1, "kind": "raised", "type": "E", "message": "m", "traceback": "t"},
    {"op": "error", "id": 1, "kind": "oom", "type": "E", "message": "m", "traceback": ""},
]


@pytest.mark.parametrize("reply", GOOD_REPLIES)
def test_check_reply_accepts_well_formed_replies(reply: dict[str, Any]) -> None:
    assert check_reply(reply) is reply


@pytest.mark.parametrize(
    "reply",
    [
        {"op": "invoke", "id": 1},  # a request, not a reply
        {"op": "loaded"},  # no id
        {"op": "loaded", "id": True},  # a bool is not an id
        {"op": "loaded", "id": "1"},
        {"op": "result", "id": 1, "body": "text", "content_type": "x", "first_line_at": 1.0},
        {"op": "error", "id": 1, "kind": "segfault", "type": "E", "message": "", "traceback": ""},
    ],
)
def test_check_reply_refuses_malformed_replies(reply: dict[str, Any]) -> None:
    with pytest.raises(SandboxError, match="protocol violation"):
        check_reply(reply)


def test_load_and_invoke_messages_carry_what_the_worker_needs() -> None:
    code = FunctionCode(
        "app", "fn", "2", "main:handle", Path("/code"), Limits(memory_mb=64, concurrency=4)
    )
    load = load_message(0, code, "abc", {"A": "1"})
    assert load == {
        "op": "load",
        "id": 0,
        "path": "/code",
        "handler": "main:handle",
        "env": {"A": "1"},
        "limits": {"memory_mb": 64, "cpu": 0.5, "timeout_s": 10.0, "concurrency": 4},
        "app": "app",
        "name": "fn",
        "version": "2",
        "instance_id": "abc",
    }
    invoke = invoke_message(5, Event("udp", b"\x01", {"peer": "10.0.0.1"}), 123.5)
    assert invoke == {
        "op": "invoke",
        "id": 5,
        "trigger": "udp",
        "body": b"\x01",
        "meta": {"peer": "10.0.0.1"},
        "deadline": 123.5,
    }
    assert unpack(pack(load)[HEADER.size :]) == load
    assert unpack(pack(invoke)[HEADER.size :]) == invoke

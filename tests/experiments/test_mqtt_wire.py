"""The hand-framed MQTT packets, checked by hand and against paho on a real mosquitto."""

from __future__ import annotations

import socket
import time

import paho.mqtt.client as mqtt
import pytest

from nfaas.errors import ExperimentError
from nfaas.experiments.broker import HOST, ProcessBroker
from nfaas.experiments.mqtt_wire import (
    PubackReader,
    PublishFramer,
    check_connack,
    connect_packet,
    remaining_length,
)


def test_remaining_length_is_mqtt_variable_length() -> None:
    assert remaining_length(0) == b"\x00"
    assert remaining_length(127) == b"\x7f"
    assert remaining_length(128) == b"\x80\x01"
    assert remaining_length(16_383) == b"\xff\x7f"
    assert remaining_length(2_097_152) == b"\x80\x80\x80\x01"


def test_pubacks_split_anywhere_in_the_stream_are_all_read() -> None:
    stream = b"".join(bytes([0x40, 0x02, i >> 8, i & 0xFF]) for i in (1, 300, 65535))
    reader = PubackReader()
    got = reader.feed(stream[:3]) + reader.feed(stream[3:9]) + reader.feed(stream[9:])
    assert got == [1, 300, 65535]


def test_anything_but_a_puback_is_refused() -> None:
    with pytest.raises(ExperimentError, match="not a PUBACK"):
        PubackReader().feed(b"\x30\x02\x00\x01")
    with pytest.raises(ExperimentError, match="refused"):
        check_connack(b"\x20\x02\x00\x05")


async def test_a_paho_subscriber_receives_what_the_framer_publishes() -> None:
    async with ProcessBroker() as broker:
        received: list[tuple[str, bytes]] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        sub.on_message = lambda c, u, m: received.append((m.topic, bytes(m.payload)))
        sub.connect(HOST, broker.port)
        sub.subscribe("nfaas/t", qos=1)
        sub.loop_start()
        try:
            time.sleep(0.3)  # noqa: ASYNC251  the subscription settles; nothing else runs
            with socket.create_connection((HOST, broker.port), timeout=5) as pub:
                pub.sendall(connect_packet("framer"))
                check_connack(pub.recv(4))
                pub.sendall(PublishFramer("nfaas/t", bytes(range(200)) * 4).packet(7))
                assert PubackReader().feed(pub.recv(4)) == [7]
            deadline = time.monotonic() + 5
            while not received and time.monotonic() < deadline:
                time.sleep(0.02)  # noqa: ASYNC251
        finally:
            sub.disconnect()
            sub.loop_stop()
    assert received == [("nfaas/t", bytes(range(200)) * 4)]

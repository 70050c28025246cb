"""The few MQTT 3.1.1 packets the load generator sends and reads, framed by hand.

paho-mqtt (the platform's MQTT client, ``nfaas.triggers.mqtt``) costs about
200 us of Python per QoS 1 message here (60 us to publish, 140 us to read its
PUBACK), so one paho publisher tops out near 4,800 messages/s per core. The
paper's 20 topics ask 16,000 messages/s, and this node has two cores that the
broker shares: with paho the generator, not the broker, would be measured. A
publisher needs only CONNECT, CONNACK, PUBLISH (QoS 1) and PUBACK, which are a
few bytes each (MQTT 3.1.1, OASIS standard, sections 3.1-3.4), so they are
framed here and the generator spends ~10 us per message. The tests check the
framing against paho and mosquitto.
"""

from __future__ import annotations

import struct

from nfaas.errors import ExperimentError

CONNECT = 0x10
CONNACK = 0x20
PUBLISH_QOS1 = 0x32
PUBACK = 0x40
#: MQTT 3.1.1 section 3.4: a PUBACK is always these two bytes, then the packet id
PUBACK_HEADER = bytes([PUBACK, 0x02])
MAX_PACKET_ID = 0xFFFF


def remaining_length(n: int) -> bytes:
    """The variable-length integer of a fixed header (section 2.2.3)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, keepalive_s: int = 0) -> bytes:
    """CONNECT with a clean session; keep-alive 0 (off): the publisher never goes quiet."""
    body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive_s)
    body += _string(client_id)
    return bytes([CONNECT]) + remaining_length(len(body)) + body


def check_connack(data: bytes) -> None:
    """Raise unless ``data`` is a CONNACK accepting the connection."""
    if len(data) < 4 or data[0] != CONNACK or data[3] != 0:
        raise ExperimentError(f"the broker refused the connection: {data[:4].hex()}")


class PublishFramer:
    """QoS 1 PUBLISH packets of one topic and payload size, differing only in packet id."""

    def __init__(self, topic: str, payload: bytes) -> None:
        variable = _string(topic)
        size = len(variable) + 2 + len(payload)
        self._head = bytes([PUBLISH_QOS1]) + remaining_length(size) + variable
        self._payload = payload

    def packet(self, packet_id: int) -> bytes:
        return self._head + struct.pack("!H", packet_id) + self._payload


class PubackReader:
    """Packet ids of the PUBACKs in a byte stream that may split them anywhere."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[int]:
        buffer = self._pending + data
        ids: list[int] = []
        whole = len(buffer) - len(buffer) % 4
        for at in range(0, whole, 4):
            if buffer[at : at + 2] != PUBACK_HEADER:
                raise ExperimentError(f"not a PUBACK from the broker: {buffer[at : at + 4].hex()}")
            ids.append((buffer[at + 2] << 8) | buffer[at + 3])
        self._pending = buffer[whole:]
        return ids

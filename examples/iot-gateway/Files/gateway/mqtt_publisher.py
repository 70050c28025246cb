"""The function's own MQTT client, for results that go to more than one topic or none.

A trigger's ``publish`` sends a result to one fixed topic, and only an MQTT
event's result; this example must publish to a topic per recipient, or when a
timer fires. So the instance keeps one connection to the broker (paho-mqtt,
the client the platform uses) and publishes at QoS 1: ``publish`` returns
once the broker has acknowledged every message (PUBACK), and raises if it did
not, so the caller can keep the messages or fail the invocation (an MQTT
trigger then has its own message redelivered: at least once, end to end).

No network thread: a confined worker may start few tasks, and the instance
only talks to the broker while it publishes, so ``publish`` drives paho's
loop itself. Keep-alive is off (0, MQTT 3.1.1 3.1.2.10), so an instance idle
between events keeps its connection; one the broker dropped meanwhile (a
restart) is found at the next publish, which then reconnects and tries once
more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every message in time."""


class MqttPublisher:
    def __init__(self, broker: str, qos: int = 1, timeout_s: float = 0.5) -> None:
        address = urlsplit(broker)  # mqtt://host[:port], as in a trigger's ``broker``
        self._host, self._port = address.hostname or "127.0.0.1", address.port or 1883
        self._qos = qos
        self._timeout_s = timeout_s
        self._client: mqtt.Client | None = None
        self.published = 0

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish ``(topic, payload)`` pairs; return once the broker acknowledged them all."""
        if not messages:
            return
        try:
            self._publish_once(messages)
        except (OSError, PublishFailed):
            self.close()  # a stale connection: one fresh try
            self._publish_once(messages)
        self.published += len(messages)

    def _publish_once(self, messages: list[tuple[str, bytes]]) -> None:
        client = self._connected()
        sent = [client.publish(topic, payload, qos=self._qos) for topic, payload in messages]
        self._loop_until(lambda: all(info.is_published() for info in sent), "PUBACK")

    def _connected(self) -> mqtt.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        self.close()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.connect_timeout = self._timeout_s
        self._client = client
        client.connect(self._host, self._port, keepalive=0)
        self._loop_until(client.is_connected, "CONNACK")
        return client

    def _loop_until(self, done: Callable[[], bool], what: str) -> None:
        assert self._client is not None
        deadline = time.monotonic() + self._timeout_s
        while not done():
            if self._client.loop(0.01) != mqtt.MQTT_ERR_SUCCESS:
                raise PublishFailed(f"connection to the broker lost while waiting for {what}")
            if time.monotonic() > deadline:
                raise PublishFailed(f"no {what} from the broker within {self._timeout_s} s")

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except OSError:
                pass
            self._client = None

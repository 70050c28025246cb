"""MQTT triggers: each message on a subscribed topic filter is an event (IoT paper, section 4).

Sensors publish readings to a broker; a function subscribes to topic filters
and gets each message as an event (``trigger="mqtt"``, ``meta``: topic, QoS,
whether it is a redelivery). With ``publish``, a non-empty result of the
function is published to that topic at the trigger's QoS.

QoS. A QoS 0 message is dispatched and forgotten. A QoS 1 message is
acknowledged (PUBACK) only once the function has succeeded (and its result,
if any, was handed to the client to publish). When the function fails or is
refused, the message is not acknowledged and the source reconnects: MQTT
3.1.1 (4.4) redelivers unacknowledged messages on reconnection only, and the
session is persistent (a fixed client id, ``clean_session`` off), so the
broker redelivers it, flagged ``dup``. At least once, never lost: a function
may see a message again, and must tolerate it.

A broker that goes away and comes back: the client reconnects on its own
(backoff ``RECONNECT_MIN_S`` to ``RECONNECT_MAX_S``); QoS 1 messages published
meanwhile wait in the persistent session and arrive after the reconnection.

The client is paho-mqtt, whose network loop runs on a thread of its own;
messages cross to the event loop with ``call_soon_threadsafe``. Drops are
counted as ``nfaas_trigger_dropped_total{trigger="mqtt", reason=...}``:
``overloaded`` (``MAX_IN_FLIGHT`` messages held, or function management
refused; QoS 1 ones come back), ``internal_error``, ``shutdown``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from nfaas.errors import NfaasError, Overloaded
from nfaas.packages.descriptors import MqttTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource, drain

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1024
#: paho counts these in whole seconds
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 4
KEEPALIVE_S = 10
#: seconds between reconnections asked for by failed QoS 1 messages (a failing function
#: would otherwise have its message redelivered in a tight loop)
REDELIVERY_PAUSE_S = 0.2


def client_id(binding: TriggerBinding) -> str:
    """A stable id per binding: the broker keeps the persistent session under it."""
    digest = hashlib.sha256(repr((binding.app, binding.function, binding.index)).encode())
    return f"nfaas-{binding.app}-{binding.function}-{digest.hexdigest()[:8]}"[:64]


class MqttSource(TriggerSource):
    def __init__(self, binding: TriggerBinding, dispatch: Dispatch, telemetry: Telemetry) -> None:
        super().__init__(binding)
        assert isinstance(binding.spec, MqttTrigger)
        self._spec = binding.spec
        self._dispatch = dispatch
        self._telemetry = telemetry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: bumped at every connection: an ack is only valid on the connection that got the message
        self._generation = 0
        self._reconnecting: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.redelivery_requests = 0
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id(self.binding),
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.manual_ack_set(True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self._spec.address()
        # connect_async + loop_start: the network thread connects, and keeps reconnecting
        self._client.connect_async(host, port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self.state = SourceState.LISTENING

    # -- the network thread's side ---------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning(
                "mqtt %s: the broker refused the connection: %s", self.binding.describe(), reason
            )
            return
        self._generation += 1
        filters: list[tuple[str, int]] = [(topic, self._spec.qos) for topic in self._spec.topics]
        client.subscribe(filters)
        self._call(self._connected_changed, True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._call(self._connected_changed, False)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = (
            message.topic,
            bytes(message.payload),
            message.qos,
            message.mid,
            bool(message.dup),
        )
        self._call(self.received, *received, self._generation, time.monotonic())

    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # -- the event loop's side -------------------------------------------------------------

    def _connected_changed(self, up: bool) -> None:
        if up:
            self.connected.set()
            self.error = None
        else:
            self.connected.clear()
            self.error = "not connected to the broker; reconnecting"

    def _drop(self, reason: str) -> None:
        self.failed += 1
        self._telemetry.dropped("mqtt", reason)

    def received(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        mid: int,
        dup: bool,
        generation: int,
        arrival: float,
    ) -> None:
        if self.state is SourceState.CLOSED:
            self._drop("shutdown")
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._drop("overloaded")
            self._redeliver_later(qos)
            return
        meta = {"topic": topic, "qos": qos, "dup": dup}
        task = asyncio.get_running_loop().create_task(
            self._handle(Event("mqtt", payload, meta), mid, generation, arrival)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, event: Event, mid: int, generation: int, arrival: float) -> None:
        b = self.binding
        qos = int(event.meta["qos"])
        try:
            result = await self._dispatch(b.app, b.function, event, arrival=arrival)
        except Overloaded:
            self._drop("overloaded")
            self._redeliver_later(qos)
            return
        except NfaasError as exc:
            self.failed += 1  # counted as an invocation outcome by function management
            log.debug("mqtt %s on %s: %s", b.describe(), event.meta["topic"], exc.detail)
            self._redeliver_later(qos)
            return
        except Exception:
            self._drop("internal_error")
            log.exception("mqtt %s: dispatching a message failed", b.describe())
            self._redeliver_later(qos)
            return
        if self._spec.publish and result.body:
            self._client.publish(self._spec.publish, result.body, qos=self._spec.qos)
        if qos > 0 and generation == self._generation:
            self._client.ack(mid, qos)
        self.delivered += 1

    def _redeliver_later(self, qos: int) -> None:
        """Reconnect (once for all the messages that failed meanwhile) so the broker redelivers."""
        if qos == 0 or self.state is SourceState.CLOSED:
            return
        if self._reconnecting is None or self._reconnecting.done():
            self.redelivery_requests += 1
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        await asyncio.sleep(REDELIVERY_PAUSE_S)
        if self.state is SourceState.CLOSED:
            return
        # a fresh network loop: paho's reconnect() is not safe against its running thread
        await asyncio.to_thread(self._restart_client)

    def _restart_client(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        host, port = self._spec.address()
        self._client.connect_async(host, port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def _cancelled(self, task: asyncio.Task[Any]) -> None:
        self._drop("shutdown")

    async def _close(self, grace_s: float) -> None:
        try:
            await drain(self._tasks, grace_s, self._cancelled)
        finally:
            if self._reconnecting is not None:
                self._reconnecting.cancel()
                await asyncio.gather(self._reconnecting, return_exceptions=True)
            await asyncio.to_thread(self._stop_client)

    def _stop_client(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

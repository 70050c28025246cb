"""A real MQTT broker for tests: mosquitto on a free loopback port, persistent across restarts."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.requirements import require

HOST = "127.0.0.1"


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _mosquitto() -> tuple[bool, str]:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    return (found is not None, "needs mosquitto (the MQTT broker)")


class Broker:
    """A mosquitto on 127.0.0.1:``port``, persistent across restarts (it keeps sessions)."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_tcp_port()
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            # started as root, mosquitto would switch to its own user, who cannot write here
            f"user {getpass.getuser()}\n"
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nmax_queued_messages 10000\n"
            f"log_dest file {folder}/broker.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: mosquitto saves its sessions first
            self.process.wait(5)
        self.process = None

    def publish(self, topic: str, payloads: list[bytes], qos: int = 1) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.connect(HOST, self.port)
        client.loop_start()
        try:
            for payload in payloads:
                client.publish(topic, payload, qos=qos).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()


def running_broker(tmp_path: Path) -> Iterator[Broker]:
    """A started broker, stopped at the end (for a fixture: ``yield from running_broker(...)``)."""
    require(_mosquitto(), "MQTT trigger tests")
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Subscriber:
    """Collects what the broker delivers on ``topic`` (with the time it came)."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.messages: list[tuple[str, bytes, float]] = []
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), time.time())
        )
        self._client.connect(HOST, broker.port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()

    def payloads(self) -> list[bytes]:
        return [payload for _, payload, _ in self.messages]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

"""MQTT trigger: messages per second and latency from publish to function, against a bare subscriber.

    .venv/bin/python benchmarks/mqtt.py [--quick]

A mosquitto on a free loopback port; one publisher sends ``count`` messages
as fast as the client lets it (QoS 0 and QoS 1, each message stamped with
``time.monotonic()``). Two receivers on the same broker, one after the other:

* ``trigger``: an ``nfaas.triggers.mqtt.MqttSource`` whose dispatch is a stub
  that notes the arrival (what the trigger adds before a function runs);
* ``floor``: a bare paho subscriber noting the arrival in its callback.

Two modes: ``flood`` (as fast as the publisher goes: the rate, messages over
the time from the first publish to the last arrival) and ``paced`` (500
messages, one every 2 ms: the latency, arrival minus the stamp, without the
queueing a flood causes). Writes ``benchmarks/results/mqtt.json``;
``benchmarks/run.py --only mqtt`` runs the same as a section of the suite
(``run`` and ``section``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.figures import Figure, Section
from benchmarks.machine import describe
from benchmarks.stats import summarize
from nfaas.packages.descriptors import MqttTrigger
from nfaas.sandboxes.base import Event, Result
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import TriggerBinding
from nfaas.triggers.mqtt import MqttSource

RESULTS = Path(__file__).resolve().parent / "results" / "mqtt.json"
HOST = "127.0.0.1"


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    config = folder / "mosquitto.conf"
    config.write_text(f"user root\nlistener {port} {HOST}\nallow_anonymous true\nmax_queued_messages 100000\n"
                      "max_inflight_messages 100\n")  # fmt: skip
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(250):
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return broker, port
        except OSError:
            time.sleep(0.02)
    broker.kill()
    raise SystemExit("mosquitto did not start")


def publish(port: int, topic: str, count: int, qos: int, gap_s: float = 0.0) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(100)
    client.connect(HOST, port)
    client.loop_start()
    started = time.monotonic()
    infos = []
    for _ in range(count):
        infos.append(client.publish(topic, str(time.monotonic()).encode(), qos=qos))
        if gap_s:
            time.sleep(gap_s)
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    return started


async def through_trigger(
    port: int, topic: str, count: int, qos: int, gap_s: float
) -> dict[str, Any]:
    arrivals: list[float] = []
    done = asyncio.Event()

    async def dispatch(
        app: str, function: str, event: Event, *, arrival: float | None = None
    ) -> Result:
        arrivals.append(time.monotonic() - float(event.body))
        if len(arrivals) >= count:
            done.set()
        return Result(b"")

    spec = MqttTrigger(broker=f"mqtt://{HOST}:{port}", topics=[topic], qos=qos)  # type: ignore[arg-type]
    # a session of its own per run: a persistent one would hold the other runs' messages
    source = MqttSource(
        TriggerBinding("bench", topic.replace("/", "-"), spec), dispatch, Telemetry()
    )
    await source.start()
    await asyncio.wait_for(source.connected.wait(), 10)
    await asyncio.sleep(0.3)
    started = await asyncio.to_thread(publish, port, topic, count, qos, gap_s)
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.monotonic() - started
    await source.aclose()
    return {
        "messages_per_s": count / elapsed,
        "latency_ms": summarize([a * 1000 for a in arrivals]).as_dict(),
    }


def bare_subscriber(port: int, topic: str, count: int, qos: int, gap_s: float) -> dict[str, Any]:
    arrivals: list[float] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_message = lambda c, u, m: arrivals.append(time.monotonic() - float(m.payload))
    client.connect(HOST, port)
    client.subscribe(topic, qos=qos)
    client.loop_start()
    time.sleep(0.3)
    started = publish(port, topic, count, qos, gap_s)
    deadline = time.monotonic() + 120
    while len(arrivals) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return {
        "messages_per_s": len(arrivals) / elapsed,
        "latency_ms": summarize([a * 1000 for a in arrivals]).as_dict(),
    }


PACED = 500
PACED_GAP_S = 0.002


def run(quick: bool) -> dict[str, Any]:
    """Both receivers at QoS 0 and 1, flooded and paced, on a broker of the run's own."""
    count = 2000 if quick else 10000
    results: dict[str, Any] = {"messages": count, "paced": PACED, "paced_gap_s": PACED_GAP_S}
    with tempfile.TemporaryDirectory(prefix="nfaas-mqtt-") as tmp:
        broker, port = start_broker(Path(tmp))
        try:
            # flood: as fast as the publisher goes (the rate); paced: one message every
            # 2 ms (the latency, without the queueing a flood causes)
            for qos, (mode, n, gap) in itertools.product(
                (0, 1), (("flood", count, 0.0), ("paced", PACED, PACED_GAP_S))
            ):
                row = {"trigger": asyncio.run(through_trigger(port, f"t/{qos}/{mode}", n, qos, gap)),
                       "floor": bare_subscriber(port, f"f/{qos}/{mode}", n, qos, gap)}  # fmt: skip
                results[f"qos{qos}_{mode}"] = row
                for name, r in row.items():
                    lat = r["latency_ms"]
                    print(f"qos {qos} {mode} {name:8s}: {r['messages_per_s']:9,.0f} msg/s, "
                          f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            broker.terminate()
            broker.wait(5)
    return results


def section(results: dict[str, Any]) -> Section:
    """The run as a section of ``benchmarks/run.py``'s results (and ``docs/benchmarks.md``)."""
    result = Section(
        "mqtt",
        "MQTT trigger: messages per second and latency from publish to function",
        "a bare paho subscriber on the same broker, the same messages",
    )
    for qos in (0, 1):
        flood, paced = results[f"qos{qos}_flood"], results[f"qos{qos}_paced"]
        result.add(Figure(f"qos{qos}.rate", f"QoS {qos}, flooded: messages through the trigger",
                          "/s", flood["trigger"]["messages_per_s"],
                          flood["floor"]["messages_per_s"]))  # fmt: skip
        for p in ("p50", "p99"):
            result.add(Figure(f"qos{qos}.{p}", f"QoS {qos}, paced: publish → function, {p}",
                              "ms", paced["trigger"]["latency_ms"][p],
                              paced["floor"]["latency_ms"][p]))  # fmt: skip
    result.method = (
        f"A mosquitto of the run's own on a loopback port; one paho publisher. Rates: "
        f"{results['messages']:,} messages published as fast as the client goes, over the time "
        f"from the first publish to the last arrival. Latencies: {results['paced']} messages, "
        f"one every {results['paced_gap_s'] * 1000:g} ms, each stamped with the monotonic clock "
        "at publishing. The trigger is an `MqttSource` whose dispatch notes the arrival (no "
        "function runs: what the trigger adds before one would). Also "
        "`.venv/bin/python benchmarks/mqtt.py`."
    )
    result.detail = results
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    args = parser.parse_args()
    results = run(args.quick)
    document = {"benchmark": "mqtt", "quick": args.quick, "machine": describe(), "results": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()

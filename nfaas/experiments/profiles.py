"""How long and how often each experiment measures: the ``tiny``, ``quick`` and ``full`` profiles.

``full`` has the paper's durations (5 minutes per load point, section 5.2.2);
``quick`` finishes every experiment in a few minutes; ``tiny`` is for the test
of the harness (seconds; no microVM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["tiny", "quick", "full"]
BACKENDS = ("process", "container", "microvm", "wasm")


@dataclass(frozen=True, slots=True)
class FootprintProfile:
    backends: tuple[str, ...]
    #: deployments timed (no sampler running) per backend
    boot_reps: int
    #: the microVM's, whose restore takes ~0.2 s here
    microvm_boot_reps: int
    #: microVM boots from nothing (snapshots off, ~8 s each under TCG)
    microvm_cold_boots: int
    #: memory traces per backend and scenario
    trace_reps: int
    sample_interval_s: float
    #: how long the trace goes on after the deployment (and the invocation)
    hold_s: float


@dataclass(frozen=True, slots=True)
class BrokerProfile:
    forms: tuple[str, ...]
    topics: tuple[int, ...]
    duration_s: float
    reps: int
    ack_timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class QueueingProfile:
    form: str
    #: topics of the constant-rate ramp that looks for the saturation point
    ramp_topics: tuple[int, ...]
    ramp_duration_s: float
    #: offered loads, as fractions of the service rate
    loads: tuple[float, ...]
    duration_s: float
    reps: int


@dataclass(frozen=True, slots=True)
class Profile:
    name: ProfileName
    footprint: FootprintProfile
    broker: BrokerProfile
    queueing: QueueingProfile


def profile(name: ProfileName) -> Profile:
    if name == "tiny":
        return Profile(
            name,
            FootprintProfile(("process", "container", "wasm"), 2, 1, 0, 1, 0.02, 0.1),
            BrokerProfile(("process", "container"), (1, 2), 0.5, 2),
            QueueingProfile("process", (5, 10), 0.5, (0.2, 0.5), 0.5, 2),
        )
    if name == "quick":
        return Profile(
            name,
            FootprintProfile(BACKENDS, 10, 5, 0, 3, 0.02, 0.5),
            BrokerProfile(("process", "container"), (1, 5, 10, 20), 4.0, 3),
            QueueingProfile(
                "process", (5, 10, 20, 30, 40), 2.0, (0.1, 0.3, 0.5, 0.7, 0.85), 4.0, 3
            ),
        )
    return Profile(
        name,
        FootprintProfile(BACKENDS, 30, 20, 3, 10, 0.01, 2.0),
        BrokerProfile(("process", "container"), (1, 2, 3, 4, 5, 10, 15, 20), 300.0, 3),
        QueueingProfile(
            "process", (5, 10, 20, 30, 40, 50), 30.0, (0.1, 0.3, 0.5, 0.7, 0.85), 300.0, 3
        ),
    )

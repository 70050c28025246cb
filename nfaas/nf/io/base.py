"""Where an NF's packets come from and go to: the interface of a packet port.

A port is a synchronous context manager: an NF's data path runs on one
thread of its sandbox, between batches, with nothing to await (a source
blocks at most for the ``timeout_s`` it is given). ``close`` is idempotent and
the state says whether the port can still be used.

Implementations, one per module: ``pcap`` (files, for offline tests and
replay), ``afpacket`` (an interface, through an AF_PACKET socket) and
``datagram`` (the events of a UDP or TCP port trigger, inside a function).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from nfaas.errors import CaptureError
from nfaas.nf.batch import PacketBatch


class PortState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class PacketPort(ABC):
    def __init__(self) -> None:
        self.state = PortState.OPEN
        self.packets = 0

    def _check_open(self) -> None:
        if self.state is not PortState.OPEN:
            raise CaptureError(f"{type(self).__name__} is closed")

    def close(self) -> None:
        if self.state is PortState.OPEN:
            self.state = PortState.CLOSED
            self._release()

    @abstractmethod
    def _release(self) -> None:
        """Free what the port holds; run once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PacketSource(PacketPort):
    @abstractmethod
    def read(self, max_packets: int = 256, timeout_s: float = 0.0) -> PacketBatch:
        """Up to ``max_packets`` packets; an empty batch when none came (or the source ended)."""


class PacketSink(PacketPort):
    @abstractmethod
    def write(self, batch: PacketBatch) -> int:
        """Send or store every frame of ``batch``; returns how many went out."""

"""Raw frames of a network interface, through an AF_PACKET socket.

The socket is bound to one interface (ETH_P_ALL: every protocol) and made
inside the interface's network namespace when one is named (a socket keeps
its namespace after the thread that made it leaves it, see
``nfaas.ebpf.netns``). Frames this host sends on the interface come back to
an ETH_P_ALL socket as PACKET_OUTGOING and are skipped, so an NF that
forwards on the interface it reads does not read its own output.

Reading blocks for the first frame up to ``timeout_s``, then takes what is
already queued without waiting, up to the batch size. Needs CAP_NET_RAW.

Checksum offload. A frame sent by a local socket on a veth or tap interface
is handed over with its L4 checksum not yet computed (CHECKSUM_PARTIAL, left
to hardware that is not there). The kernel says so in PACKET_AUXDATA
(TP_STATUS_CSUMNOTREADY); such frames get the ``checksum_pending`` metadata
column, and ``PacketBatch.deparse`` (run by ``emit``) computes their checksums
in full, so what the NF forwards has right checksums.
"""

from __future__ import annotations

import select
import socket
import struct

import numpy as np

from nfaas.ebpf.netns import run_in_netns
from nfaas.errors import CaptureError
from nfaas.nf.batch import PacketBatch
from nfaas.nf.io.base import PacketSink, PacketSource

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3
#: struct tpacket_auxdata: tp_status, tp_len, tp_snaplen, tp_mac, tp_net, vlan tci and tpid
_AUXDATA = struct.Struct("=IIIHHHH")
#: the largest frame read (a jumbo frame, with room to spare)
MAX_FRAME = 16_384
RECEIVE_BUFFER = 4 << 20


def open_packet_socket(interface: str, netns: str | None = None) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((interface, ETH_P_ALL))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        return run_in_netns(netns, make)
    except OSError as exc:
        where = f" in netns {netns}" if netns else ""
        raise CaptureError(f"cannot open a packet socket on {interface}{where}: {exc}") from exc


class PacketSocket(PacketSource, PacketSink):
    """An interface as both source and sink of frames."""

    def __init__(self, interface: str, *, netns: str | None = None) -> None:
        super().__init__()
        self.interface = interface
        self._sock = open_packet_socket(interface, netns)
        self._buffer = bytearray(MAX_FRAME)
        self._ancillary = socket.CMSG_SPACE(_AUXDATA.size)
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN)
        self.sent = 0

    def read(self, max_packets: int = 256, timeout_s: float = 0.0) -> PacketBatch:
        self._check_open()
        frames: list[bytes] = []
        pending: list[bool] = []
        if not self._poller.poll(max(0, int(timeout_s * 1000))):
            return PacketBatch.empty()
        view = memoryview(self._buffer)
        while len(frames) < max_packets:
            try:
                size, ancillary, _, address = self._sock.recvmsg_into(
                    [self._buffer], self._ancillary
                )
            except BlockingIOError:
                break
            except OSError as exc:
                raise CaptureError(f"reading {self.interface}: {exc}") from exc
            if address[2] != PACKET_OUTGOING:
                frames.append(bytes(view[:size]))
                pending.append(_checksum_pending(ancillary))
        self.packets += len(frames)
        batch = PacketBatch.from_frames(frames)
        batch.meta["checksum_pending"] = np.array(pending, dtype=np.bool_)
        return batch

    def write(self, batch: PacketBatch) -> int:
        self._check_open()
        sent = 0
        for frame in batch.frames():
            try:
                self._sock.send(frame)
            except BlockingIOError:
                break  # the interface's queue is full: what is left is dropped, as a NIC would
            except OSError as exc:
                raise CaptureError(f"sending on {self.interface}: {exc}") from exc
            sent += 1
        self.sent += sent
        return sent

    def _release(self) -> None:
        self._sock.close()


def _checksum_pending(ancillary: list[tuple[int, int, bytes]]) -> bool:
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
            return bool(_AUXDATA.unpack_from(data)[0] & TP_STATUS_CSUMNOTREADY)
    return False

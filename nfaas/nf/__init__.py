"""Network functions in the style of NetBricks: operator graphs over batches of packets.

``docs/nf-framework.md`` documents the framework; the modules, by concept:

``batch``, ``headers``, ``checksum``   a batch of frames, its header columns, checksums
``operators``, ``reassembly``          the operators (packet, bytestream, control flow)
``pipeline``, ``context``              building an NF, running instances of it
``state``, ``schedule``                per-flow tables and counters; timers
``flowhash``                           the flow hash shared with the trigger side; shards
``acl``, ``maglev``                    building blocks: a 5-tuple ACL, Maglev hashing
``io``                                 packet ports: pcap files, AF_PACKET, trigger events
``function``                           an NF as the handler of an nfaas Python function
"""

from nfaas.nf.batch import PacketBatch
from nfaas.nf.context import NFContext
from nfaas.nf.headers import HEADER, ParseError
from nfaas.nf.pipeline import NetworkFunction, NFInstance, Pipeline

__all__ = [
    "HEADER",
    "NFContext",
    "NFInstance",
    "NetworkFunction",
    "PacketBatch",
    "ParseError",
    "Pipeline",
]

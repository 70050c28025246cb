"""Internet checksums (RFC 1071) of many packets at once.

Every checksum here is a ones' complement sum of 16-bit words over byte
ranges of different lengths. ``range_sums`` gathers the bytes of all ranges
into one array, weights each by 256 or 1 by its parity within its range (the
high or low byte of a word), and adds each range up with one
``np.add.reduceat``: the Python cost is per batch, the work per byte.

The UDP and TCP checksums cover a pseudo-header (RFC 768, RFC 793; RFC 8200
8.1 for IPv6): the addresses, the protocol and the L4 length.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from nfaas.nf.headers import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    ByteArray,
    HeaderArray,
    IntArray,
    be16,
    put16,
)

#: where the checksum sits in each L4 header
_CHECKSUM_AT = {IPPROTO_UDP: 6, IPPROTO_TCP: 16}


def range_sums(buf: ByteArray, starts: IntArray, lengths: IntArray) -> IntArray:
    """The 16-bit word sum (not yet folded) of each byte range; an odd last byte is padded."""
    sums = np.zeros(len(starts), dtype=np.int64)
    keep = lengths > 0
    if not keep.any():
        return sums
    starts, lengths = starts[keep], lengths[keep]
    firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    total = int(lengths.sum())
    position = np.arange(total, dtype=np.int64) - np.repeat(firsts, lengths)
    data = buf[np.repeat(starts, lengths) + position].astype(np.int64)
    data[(position & 1) == 0] <<= 8
    sums[keep] = np.add.reduceat(data, firsts)
    return sums


def fold(sums: IntArray) -> IntArray:
    """Fold carries back in until every sum fits in 16 bits."""
    s = sums.copy()
    for _ in range(3):  # a sum below 2**32 fits in 16 bits after three folds
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _pseudo_header(buf: ByteArray, start: IntArray, h: HeaderArray, l4_len: IntArray) -> IntArray:
    v6 = h["ip_version"] == 6
    addr_at = start + np.where(v6, 8, 12)
    addr_len = np.where(v6, 32, 8).astype(np.int64)
    return range_sums(buf, addr_at, addr_len) + h["proto"].astype(np.int64) + l4_len


def _l4_geometry(offsets: IntArray, h: HeaderArray) -> tuple[IntArray, IntArray, IntArray]:
    start = offsets + h["l3"]
    l4_at = offsets + h["l4"]
    l4_len = h["l3"].astype(np.int64) + h["ip_len"] - h["l4"]
    return start, l4_at, l4_len


def fix(buf: ByteArray, offsets: IntArray, h: HeaderArray, rows: IntArray) -> None:
    """Recompute the IPv4 header checksum and the UDP/TCP checksum of ``rows``."""
    if len(rows) == 0:
        return
    o, hr = offsets[rows], np.take(h, rows)
    v4 = hr["ip_version"] == 4
    s4 = o[v4] + hr["l3"][v4]
    ihl = (buf[s4].astype(np.int64) & 0x0F) * 4
    put16(buf, s4 + 10, 0)
    put16(buf, s4 + 10, 0xFFFF - fold(range_sums(buf, s4, ihl)))
    for proto, at in _CHECKSUM_AT.items():
        sel = (hr["proto"] == proto) & (hr["payload"] > hr["l4"]) & (hr["ip_version"] != 0)
        if not sel.any():
            continue
        picked = np.take(hr, np.flatnonzero(sel))
        start, l4_at, l4_len = _l4_geometry(o[sel], picked)
        put16(buf, l4_at + at, 0)
        total = range_sums(buf, l4_at, l4_len) + _pseudo_header(buf, start, picked, l4_len)
        checksum = 0xFFFF - fold(total)
        if proto == IPPROTO_UDP:  # RFC 768: a computed zero is sent as all ones
            checksum[checksum == 0] = 0xFFFF
        put16(buf, l4_at + at, checksum)


def verify(buf: ByteArray, offsets: IntArray, h: HeaderArray) -> npt.NDArray[np.bool_]:
    """Whether each packet's IPv4 and L4 checksums are right (true where there are none).

    A UDP checksum of zero over IPv4 means "not computed" (RFC 768) and passes.
    """
    ok = np.ones(len(offsets), dtype=np.bool_)
    v4 = h["ip_version"] == 4
    s4 = offsets[v4] + h["l3"][v4]
    ihl = (buf[s4].astype(np.int64) & 0x0F) * 4
    ok[v4] = fold(range_sums(buf, s4, ihl)) == 0xFFFF
    for proto, at in _CHECKSUM_AT.items():
        sel = (h["proto"] == proto) & (h["payload"] > h["l4"]) & (h["ip_version"] != 0)
        if not sel.any():
            continue
        idx = np.flatnonzero(sel)
        picked = np.take(h, idx)
        start, l4_at, l4_len = _l4_geometry(offsets[idx], picked)
        total = range_sums(buf, l4_at, l4_len) + _pseudo_header(buf, start, picked, l4_len)
        good = fold(total) == 0xFFFF
        if proto == IPPROTO_UDP:
            good |= (be16(buf, l4_at + at) == 0) & (h["ip_version"][idx] == 4)
        ok[idx] &= good
    return ok


# -- incremental update (RFC 1624) ------------------------------------------------------
#
# A NAT or a load balancer changes addresses and ports, not payloads: the checksums
# follow from the old checksum and the old and new values of the changed words, with
# no pass over the payload. RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').

#: the words of an IPv4 header deparse may change: version/TOS, TTL/protocol, addresses
_IP4_WORDS = np.array([0, 1, 8, 9, *range(12, 20)], dtype=np.int64)
#: the pseudo-header's addresses, from the start of the IP header
_ADDR4 = np.arange(12, 20, dtype=np.int64)
_ADDR6 = np.arange(8, 40, dtype=np.int64)
_PORTS = np.arange(4, dtype=np.int64)


def _word_sum(byte_rows: ByteArray) -> IntArray:
    """The 16-bit word sum of each row of an (n, 2k) byte matrix."""
    wide = byte_rows.astype(np.int64)
    sums: IntArray = ((wide[:, 0::2] << 8) | wide[:, 1::2]).sum(axis=1)
    return sums


def field_sums(
    buf: ByteArray, offsets: IntArray, h: HeaderArray, rows: IntArray
) -> tuple[IntArray, IntArray]:
    """For ``rows``: the word sums, as they are now in the frames, of the bytes deparse may
    change that each checksum covers (IPv4 header; L4 pseudo-header addresses and ports)."""
    hr = np.take(h, rows)
    start = offsets[rows] + hr["l3"]
    l4_at = offsets[rows] + hr["l4"]
    ip, l4 = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
    for version, addresses in ((4, _ADDR4), (6, _ADDR6)):
        sel = np.flatnonzero(hr["ip_version"] == version)
        if not len(sel):
            continue
        if version == 4:
            ip[sel] = _word_sum(buf[start[sel][:, None] + _IP4_WORDS])
        l4[sel] = _word_sum(buf[start[sel][:, None] + addresses])
        ported = sel[hr["payload"][sel] > hr["l4"][sel]]
        l4[ported] += _word_sum(buf[l4_at[ported][:, None] + _PORTS])
    return ip, l4


def update(
    buf: ByteArray, offsets: IntArray, h: HeaderArray, rows: IntArray,
    old: tuple[IntArray, IntArray],
) -> None:  # fmt: skip
    """Update the checksums of ``rows`` after their fields changed from the sums ``old``
    (``field_sums`` before the change) to what the frames hold now."""
    new = field_sums(buf, offsets, h, rows)
    hr = np.take(h, rows)
    start = offsets[rows] + hr["l3"]
    v4 = np.flatnonzero(hr["ip_version"] == 4)
    _incremental(buf, start[v4] + 10, old[0][v4], new[0][v4], keep_zero=False)
    for proto, at in _CHECKSUM_AT.items():
        sel = np.flatnonzero(
            (hr["proto"] == proto) & (hr["payload"] > hr["l4"]) & (hr["ip_version"] != 0)
        )
        where = offsets[rows][sel] + hr["l4"][sel] + at
        # RFC 768: a UDP checksum of zero over IPv4 means none; it stays none
        _incremental(buf, where, old[1][sel], new[1][sel], keep_zero=proto == IPPROTO_UDP)


def _incremental(
    buf: ByteArray, where: IntArray, old: IntArray, new: IntArray, *, keep_zero: bool
) -> None:
    if not len(where):
        return
    checksum = be16(buf, where)
    updated = 0xFFFF - fold((0xFFFF - checksum) + (0xFFFF - fold(old)) + fold(new))
    if keep_zero:
        updated = np.where(checksum == 0, 0, np.where(updated == 0, 0xFFFF, updated))
    put16(buf, where, updated)

"""One BPF map of a loaded object: the VNF's live configuration and counters.

EVE025 6.6.1 reconfigures a running eBPF VNF by writing its maps from user
space, with no reload and no pause of the data path; issue 4 reads counters
the same way. Keys and values are raw bytes of the sizes the object declares
(``struct.pack`` on the caller's side); a per-CPU map holds one value per
possible CPU, each padded to 8 bytes, and ``lookup_per_cpu`` splits them.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Iterator
from dataclasses import dataclass

from nfaas.ebpf.libbpf import Libbpf, check
from nfaas.errors import InvalidRequest, NotFound

ENOENT = 2

# enum bpf_map_type (include/uapi/linux/bpf.h), the ones nfaas VNFs use
_PER_CPU_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH


class UpdateFlag(enum.IntEnum):
    """``BPF_ANY``, ``BPF_NOEXIST``, ``BPF_EXIST``."""

    ANY = 0
    NOEXIST = 1
    EXIST = 2


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What the object says about one map (issue 4: the descriptor must match it)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int

    @property
    def per_cpu(self) -> bool:
        return self.type in _PER_CPU_TYPES


class BpfMap:
    """A map of a loaded ``BpfObject``; valid only while the object is open."""

    def __init__(self, lib: Libbpf, fd: int, info: MapInfo, possible_cpus: int) -> None:
        self._lib = lib
        self.fd = fd
        self.info = info
        self._cpus = possible_cpus if info.per_cpu else 1
        self._stride = (info.value_size + 7) // 8 * 8 if info.per_cpu else info.value_size

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        i = self.info
        return f"BpfMap({i.name!r}, type={i.type}, key={i.key_size}B, value={i.value_size}B, max={i.max_entries})"

    def _key(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        if len(key) != self.info.key_size:
            raise InvalidRequest(
                f"map {self.name!r} takes {self.info.key_size}-byte keys, not {len(key)}",
                map=self.name,
            )
        return ctypes.create_string_buffer(key, len(key))

    def update(self, key: bytes, value: bytes, flag: UpdateFlag = UpdateFlag.ANY) -> None:
        """Set ``key`` to ``value`` (for a per-CPU map, ``value`` goes to every CPU)."""
        if len(value) != self.info.value_size:
            raise InvalidRequest(
                f"map {self.name!r} takes {self.info.value_size}-byte values, not {len(value)}",
                map=self.name,
            )
        k = self._key(key)
        raw = value.ljust(self._stride, b"\0") * self._cpus
        v = ctypes.create_string_buffer(raw, len(raw))
        check(self._lib.bpf_map_update_elem(self.fd, k, v, int(flag)), f"update {self.name}")

    def _lookup_raw(self, key: bytes) -> bytes | None:
        k = self._key(key)
        v = ctypes.create_string_buffer(self._stride * self._cpus)
        ret = self._lib.bpf_map_lookup_elem(self.fd, k, v)
        if ret == -ENOENT:
            return None
        check(ret, f"lookup {self.name}")
        return v.raw

    def lookup(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None; for a per-CPU map, CPU 0's value."""
        raw = self._lookup_raw(key)
        return None if raw is None else raw[: self.info.value_size]

    def lookup_per_cpu(self, key: bytes) -> list[bytes] | None:
        """One value per possible CPU (a plain map gives a one-item list), or None."""
        raw = self._lookup_raw(key)
        if raw is None:
            return None
        size = self.info.value_size
        return [raw[i * self._stride : i * self._stride + size] for i in range(self._cpus)]

    def delete(self, key: bytes) -> None:
        """Remove ``key``; raises ``NotFound`` if it is not there."""
        ret = self._lib.bpf_map_delete_elem(self.fd, self._key(key))
        if ret == -ENOENT:
            raise NotFound(f"no such key in map {self.name!r}", map=self.name, key=key.hex())
        check(ret, f"delete from {self.name}")

    def keys(self) -> Iterator[bytes]:
        """Every key, in the kernel's order (a concurrent update may skip or repeat one)."""
        size = self.info.key_size
        prev: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(size)
        while True:
            ret = self._lib.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret == -ENOENT:
                return
            check(ret, f"iterate {self.name}")
            key = nxt.raw
            yield key
            prev = ctypes.create_string_buffer(key, size)

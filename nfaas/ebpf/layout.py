"""Map keys and values between JSON and bytes, by the layout a descriptor declares.

EVE025 6.6.1 reconfigures an eBPF VNF by writing its maps. A user writes a
firewall rule as ``{"proto": "udp", "dport": 7001}``; the map holds the bytes
of a C struct. ``MapLayout`` turns one into the other, field by field in the
order the descriptor lists them, and refuses anything else with a message
naming the field: an unknown field, a missing required one, a value that is
not of the field's type or does not fit. Nothing is written unless the whole
entry encodes.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nfaas.errors import InvalidRequest
from nfaas.packages.ebpf_settings import FIELD_SIZES, INTEGER_TYPES, MapField

_BIG_ENDIAN = {"be16", "be32"}


class MapLayout:
    """The fields of one side (key or value) of a map."""

    def __init__(self, map_name: str, part: str, fields: Sequence[MapField]) -> None:
        self.map_name = map_name
        self.part = part
        self.fields = list(fields)
        self.size = sum(f.byte_size for f in self.fields)
        self._names = {f.name for f in self.fields if f.type != "pad"}

    def _error(self, msg: str) -> InvalidRequest:
        return InvalidRequest(f"map {self.map_name!r} {self.part}: {msg}", map=self.map_name)

    def encode(self, entry: object) -> bytes:
        """The bytes of ``entry`` (a JSON object); ``InvalidRequest`` naming the bad field."""
        if not isinstance(entry, Mapping):
            raise self._error(f"expected an object with fields {', '.join(sorted(self._names))}")
        unknown = sorted(str(k) for k in entry if k not in self._names)
        if unknown:
            raise self._error(
                f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(sorted(self._names))})"
            )
        out = bytearray()
        for f in self.fields:
            if f.type == "pad":
                out += bytes(f.byte_size)
                continue
            if f.name not in entry:
                if f.required:
                    raise self._error(f"field {f.name!r} is required")
                out += bytes(f.byte_size)
                continue
            out += self._encode_field(f, entry[f.name])
        return bytes(out)

    def _encode_field(self, f: MapField, value: Any) -> bytes:
        where = f"field {f.name!r} ({f.type})"
        if f.type in INTEGER_TYPES:
            if isinstance(value, str) and value in f.values:
                value = f.values[value]
            if isinstance(value, bool) or not isinstance(value, int):
                names = f" or one of {', '.join(f.values)}" if f.values else ""
                raise self._error(f"{where} takes an integer{names}, not {value!r}")
            size = FIELD_SIZES[f.type]
            if not 0 <= value < 1 << (8 * size):
                raise self._error(f"{where}: {value} does not fit in {size} byte(s)")
            order = "big" if f.type in _BIG_ENDIAN else sys.byteorder
            return bytes(value.to_bytes(size, order))
        if f.type in ("ipv4", "ipv6"):
            try:
                if not isinstance(value, str):
                    raise TypeError(value)
                address = ipaddress.ip_address(value)
            except (TypeError, ValueError):
                raise self._error(f"{where} takes an address, not {value!r}") from None
            if address.version != (4 if f.type == "ipv4" else 6):
                raise self._error(f"{where} takes an {f.type} address, not {value!r}")
            return address.packed
        # mac
        parts = value.split(":") if isinstance(value, str) else []
        try:
            raw = bytes(int(p, 16) for p in parts)
        except ValueError:
            raw = b""
        if len(parts) != 6 or len(raw) != 6 or any(len(p) != 2 for p in parts):
            raise self._error(f"{where} takes aa:bb:cc:dd:ee:ff, not {value!r}")
        return raw

    def decode(self, data: bytes) -> dict[str, Any]:
        """The fields of ``data``; integer fields with symbolic names show the name."""
        out: dict[str, Any] = {}
        offset = 0
        for f in self.fields:
            chunk = data[offset : offset + f.byte_size]
            offset += f.byte_size
            if f.type == "pad":
                continue
            if f.type in INTEGER_TYPES:
                number = int.from_bytes(chunk, "big" if f.type in _BIG_ENDIAN else sys.byteorder)
                name = next((k for k, v in f.values.items() if v == number), None)
                out[f.name] = name if name is not None else number
            elif f.type in ("ipv4", "ipv6"):
                out[f.name] = str(ipaddress.ip_address(chunk))
            else:
                out[f.name] = ":".join(f"{b:02x}" for b in chunk)
        return out

    def integers(self, data: bytes) -> dict[str, int]:
        """The integer fields of ``data`` as numbers (for counters)."""
        out: dict[str, int] = {}
        offset = 0
        for f in self.fields:
            chunk = data[offset : offset + f.byte_size]
            offset += f.byte_size
            if f.type in INTEGER_TYPES:
                out[f.name] = int.from_bytes(
                    chunk, "big" if f.type in _BIG_ENDIAN else sys.byteorder
                )
        return out

    def label(self, data: bytes) -> str:
        """A short text for a key, used as a metric label: ``0`` or ``proto=udp,dport=53``."""
        fields = self.decode(data)
        if len(fields) == 1:
            return str(next(iter(fields.values())))
        return ",".join(f"{k}={v}" for k, v in fields.items())

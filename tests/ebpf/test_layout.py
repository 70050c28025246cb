"""Map keys and values between JSON and bytes (nfaas.ebpf.layout), and the ebpf descriptor section."""

from __future__ import annotations

import struct
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from nfaas.ebpf.layout import MapLayout
from nfaas.errors import InvalidRequest
from nfaas.packages.ebpf_settings import EbpfMap, EbpfSettings, MapField

KEY = MapLayout(
    "rules",
    "key",
    [
        MapField(name="src", type="ipv4"),
        MapField(name="dport", type="be16"),
        MapField(name="proto", type="u8", required=True, values={"tcp": 6, "udp": 17}),
        MapField(name="pad", type="pad", size=1),
        MapField(name="mac", type="mac"),
        MapField(name="count", type="u16"),
    ],
)


def test_encode_and_decode_round_trip() -> None:
    raw = KEY.encode({"src": "10.0.0.1", "dport": 53, "proto": "udp", "mac": "02:00:00:aa:bb:cc",
                      "count": 258})  # fmt: skip
    assert len(raw) == KEY.size == 4 + 2 + 1 + 1 + 6 + 2
    assert raw[:8] == bytes([10, 0, 0, 1]) + struct.pack("!H", 53) + bytes([17, 0])
    assert raw[-2:] == (258).to_bytes(2, sys.byteorder)
    assert KEY.decode(raw) == {"src": "10.0.0.1", "dport": 53, "proto": "udp",
                               "mac": "02:00:00:aa:bb:cc", "count": 258}  # fmt: skip
    # unnamed numbers stay numbers; missing optional fields are zero
    assert KEY.decode(KEY.encode({"proto": 1})) == {"src": "0.0.0.0", "dport": 0, "proto": 1,
                                                    "mac": "00:00:00:00:00:00", "count": 0}  # fmt: skip
    assert KEY.label(KEY.encode({"proto": 6}))
    assert KEY.integers(KEY.encode({"proto": 6, "dport": 80}))["dport"] == 80


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ([1, 2], "expected an object"),
        ({"proto": 6, "pad": 1}, "unknown field(s) pad"),
        ({"dport": 1}, "field 'proto' is required"),
        ({"proto": "sctp"}, "takes an integer or one of tcp, udp, not 'sctp'"),
        ({"proto": 256}, "256 does not fit in 1 byte(s)"),
        ({"proto": -1}, "does not fit"),
        ({"proto": 6.0}, "takes an integer"),
        ({"proto": 6, "src": 167772161}, "takes an address"),
        ({"proto": 6, "mac": "02:00:00:aa:bb"}, "takes aa:bb:cc:dd:ee:ff"),
        ({"proto": 6, "mac": "zz:00:00:aa:bb:cc"}, "takes aa:bb:cc:dd:ee:ff"),
    ],
)
def test_bad_entries_name_the_field(entry: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match="map 'rules' key") as caught:
        KEY.encode(entry)
    assert message in caught.value.detail


def settings(**change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "program": {"type": "xdp", "section": "xdp"},
        "maps": [
            {"name": "rules", "type": "hash", "key_size": 4, "value_size": 4, "max_entries": 8,
             "role": "config", "key": [{"name": "k", "type": "u32"}],
             "value": [{"name": "v", "type": "u32"}]},
        ],
    }  # fmt: skip
    doc.update(change)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (settings(hook={"direction": "egress"}), "XDP runs on ingress only"),
        (
            settings(program={"type": "tc", "section": "tc"}, hook={"attach_mode": "native"}),
            "native is for XDP",
        ),
        (settings(requires={"helpers": ["map_lookup"]}), "is not a helper name"),
        (settings(requires={"kernel": "latest"}), "String should match pattern"),
        (settings(maps=[settings()["maps"][0], settings()["maps"][0]]), "map names must be unique"),
    ],
)
def test_descriptor_section_is_checked(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EbpfSettings.model_validate(doc)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key_size": 8}, "the key fields take 4 bytes but key_size is 8"),
        ({"key": []}, "a config map needs 'key' and 'value' field layouts"),
        (
            {"type": "array", "key_size": 2, "key": [{"name": "k", "type": "u16"}]},
            "an array map has 4-byte keys",
        ),
        (
            {"role": "counters", "value": [{"name": "v", "type": "ipv4"}]},
            "needs at least one integer value field",
        ),
        ({"key": [{"name": "k", "type": "pad"}]}, "a pad field needs a 'size'"),
        ({"key": [{"name": "k", "type": "u32", "size": 4}]}, "'size' is only for pad fields"),
        ({"key": [{"name": "k", "type": "ipv4", "values": {"a": 1}}]}, "'values' names integers"),
        (
            {
                "key": [
                    {"name": "k", "type": "u8", "values": {"a": 256}},
                    {"name": "p", "type": "pad", "size": 3},
                ]
            },
            "do not fit in a u8",
        ),
        ({"key": [{"name": "k", "type": "u16"}, {"name": "k", "type": "u16"}]}, "must be unique"),
    ],
)
def test_map_layouts_are_checked(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EbpfMap.model_validate(settings()["maps"][0] | change)


def test_the_function_descriptor_ties_runtime_and_section() -> None:
    from nfaas.packages.descriptors import FunctionDescriptor

    base = {"name": "fw", "version": "1", "runtime": {"name": "ebpf", "version": "1"},
            "handler": "xdp_fw", "code": {"path": "Files/fw.c"}, "ebpf": settings()}  # fmt: skip
    assert FunctionDescriptor.model_validate(base).ebpf is not None
    with pytest.raises(ValidationError, match="go together"):
        FunctionDescriptor.model_validate(base | {"ebpf": None})
    with pytest.raises(ValidationError, match="takes no triggers"):
        FunctionDescriptor.model_validate(base | {"triggers": [{"type": "udp", "port": 9}]})
    with pytest.raises(ValidationError, match="the program's C name"):
        FunctionDescriptor.model_validate(base | {"handler": "mod:fn"})

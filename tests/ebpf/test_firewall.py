"""The example XDP firewall on a real veth pair (issue 4, example VNF 1).

Real packets, real kernel: the firewall is compiled with clang, loaded and
verified through libbpf, attached in generic mode to the receiving end of a
veth pair between two namespaces, and UDP datagrams are sent from the other
end. EVE025 6.6.1: reconfiguration is a live map update, and termination
leaves no program, map or attachment behind.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from nfaas.ebpf import ProgramState, XdpHook, XdpProgram, compile_bpf
from nfaas.ebpf.loader import XdpMode
from nfaas.errors import (
    BindingConflict,
    InvalidRequest,
    NotFound,
    PackageError,
    SandboxStartError,
)
from tests.ebpf.conftest import (
    VethPair,
    bpftool_ids,
    exists,
    gone,
    require_ebpf,
    send_and_count,
)

IPPROTO_UDP = 17
DROP, PASS = 1, 0
BURST = 20


def rule_key(proto: int, port: int, src: bytes = bytes(4), dst: bytes = bytes(4)) -> bytes:
    # struct fw_key { __be32 saddr, daddr; __be16 sport, dport; __u8 proto, pad[3]; }
    return struct.pack("!4s4sHHB3x", src, dst, 0, port, proto)


def rule(action: int, counter: int) -> bytes:
    return struct.pack("=II", action, counter)


def packets_counted(prog: XdpProgram, slot: int) -> int:
    values = prog.maps["counters"].lookup_per_cpu(struct.pack("=I", slot)) or []
    return sum(struct.unpack("=QQ", v)[0] for v in values)


@pytest.mark.parametrize("mode", ["generic", "native"])
async def test_firewall_drops_counts_reconfigures_and_leaves_nothing(
    veth_pair: VethPair, firewall_elf: bytes, mode: XdpMode
) -> None:
    hook = XdpHook(veth_pair.receiver, mode=mode, netns=veth_pair.receiver_ns)
    prog = XdpProgram(firewall_elf, "xdp_firewall", name="fw-test")
    try:
        await prog.load()
        assert set(prog.maps) >= {"rules", "counters"}
        assert prog.maps["rules"].info.key_size == 16
        map_ids = prog.map_ids
        await prog.attach(hook)
        assert prog.state is ProgramState.ATTACHED
        assert "xdp" in veth_pair.xdp_on_receiver()

        # before any rule, everything passes (default pass)
        assert send_and_count(veth_pair, 7001) == BURST

        prog.maps["rules"].update(rule_key(IPPROTO_UDP, 7001), rule(DROP, 1))
        assert send_and_count(veth_pair, 7001) == 0
        assert send_and_count(veth_pair, 7002) == BURST
        assert packets_counted(prog, 1) == BURST
        assert packets_counted(prog, 0) >= 2 * BURST  # unmatched traffic, ARP aside

        assert list(prog.maps["rules"].keys()) == [rule_key(IPPROTO_UDP, 7001)]
        prog.maps["rules"].delete(rule_key(IPPROTO_UDP, 7001))
        assert send_and_count(veth_pair, 7001) == BURST
        assert packets_counted(prog, 1) == BURST  # the removed rule counts no more
        with pytest.raises(NotFound):
            prog.maps["rules"].delete(rule_key(IPPROTO_UDP, 7001))

        await prog.detach()
        await prog.detach()  # idempotent
        assert veth_pair.xdp_on_receiver() == ""
        assert prog.state is ProgramState.LOADED
        assert exists("prog", prog.prog_id)
    finally:
        await prog.aclose()
    await prog.aclose()  # idempotent
    assert prog.state is ProgramState.CLOSED
    assert veth_pair.xdp_on_receiver() == ""
    assert gone("prog", prog.prog_id)
    assert all(gone("map", i) for i in map_ids)


async def test_aclose_while_attached_detaches_and_unloads(
    veth_pair: VethPair, firewall_elf: bytes
) -> None:
    hook = XdpHook(veth_pair.receiver, netns=veth_pair.receiver_ns)
    async with XdpProgram(firewall_elf, "xdp_firewall") as prog:
        await prog.load()
        await prog.attach(hook)
        prog.maps["rules"].update(rule_key(IPPROTO_UDP, 7003), rule(DROP, 2))
        assert send_and_count(veth_pair, 7003, 5) == 0
    assert veth_pair.xdp_on_receiver() == ""
    assert gone("prog", prog.prog_id)
    assert send_and_count(veth_pair, 7003, 5) == 5


async def test_termination_racing_with_traffic_leaves_nothing(
    veth_pair: VethPair, firewall_elf: bytes
) -> None:
    hook = XdpHook(veth_pair.receiver, netns=veth_pair.receiver_ns)
    prog = XdpProgram(firewall_elf, "xdp_firewall")
    await prog.load()
    await prog.attach(hook)
    prog.maps["rules"].update(rule_key(IPPROTO_UDP, 7004), rule(DROP, 3))
    tx = veth_pair.udp_socket("sender")
    stop = threading.Event()

    def flood() -> None:
        deadline = time.monotonic() + 5.0  # bounded even if the test hangs
        while not stop.is_set() and time.monotonic() < deadline:
            tx.sendto(b"x" * 64, (veth_pair.receiver_ip, 7004))

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        await asyncio.sleep(0.05)
        assert packets_counted(prog, 3) > 0
        await prog.aclose()
    finally:
        stop.set()
        sender.join(timeout=10)
        tx.close()
    assert prog.state is ProgramState.CLOSED
    assert veth_pair.xdp_on_receiver() == ""
    assert gone("prog", prog.prog_id)
    assert send_and_count(veth_pair, 7004, 5) == 5


async def test_cancelled_attach_then_aclose_leaves_nothing(
    veth_pair: VethPair, firewall_elf: bytes
) -> None:
    hook = XdpHook(veth_pair.receiver, netns=veth_pair.receiver_ns)
    prog = XdpProgram(firewall_elf, "xdp_firewall")
    await prog.load()
    attaching = asyncio.create_task(prog.attach(hook))
    await asyncio.sleep(0)  # the worker thread has started
    attaching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attaching
    await prog.aclose()
    assert veth_pair.xdp_on_receiver() == ""
    assert gone("prog", prog.prog_id)


async def test_second_attach_on_occupied_hook_is_a_conflict(
    veth_pair: VethPair, firewall_elf: bytes
) -> None:
    hook = XdpHook(veth_pair.receiver, netns=veth_pair.receiver_ns)
    async with (
        XdpProgram(firewall_elf, "xdp_firewall") as first,
        XdpProgram(firewall_elf, "xdp_firewall") as second,
    ):
        await first.load()
        await second.load()
        await first.attach(hook)
        with pytest.raises(BindingConflict):
            await second.attach(hook)
        assert second.state is ProgramState.LOADED
        await second.aclose()  # must not take the first one's program off the hook
        assert "xdp" in veth_pair.xdp_on_receiver()
        assert exists("prog", first.prog_id)
    assert veth_pair.xdp_on_receiver() == ""


async def test_missing_interface_is_not_found(firewall_elf: bytes) -> None:
    async with XdpProgram(firewall_elf, "xdp_firewall") as prog:
        await prog.load()
        with pytest.raises(NotFound, match="nfaas-nope0"):
            await prog.attach(XdpHook("nfaas-nope0"))
        assert prog.state is ProgramState.LOADED
    assert gone("prog", prog.prog_id)


async def test_missing_program_fails_and_leaves_nothing(firewall_elf: bytes) -> None:
    before = bpftool_ids("map")
    prog = XdpProgram(firewall_elf, "no_such_prog")
    with pytest.raises(SandboxStartError, match="no program 'no_such_prog'"):
        await prog.load()
    assert prog.state is ProgramState.FAILED
    assert bpftool_ids("map") <= before
    await prog.aclose()


# An out-of-bounds packet read: no check against data_end before the load.
OUT_OF_BOUNDS = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_oob(struct xdp_md *ctx)
{
    unsigned char *data = (void *)(long)ctx->data;
    return data[20] == 0xff ? XDP_DROP : XDP_PASS;
}

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} oob_counter SEC(".maps");

char LICENSE[] SEC("license") = "GPL";
"""


async def test_verifier_rejection_reaches_the_user_and_leaves_nothing(tmp_path: Path) -> None:
    require_ebpf()
    src = tmp_path / "oob.bpf.c"
    src.write_text(OUT_OF_BOUNDS)
    elf = await compile_bpf(src, tmp_path / "oob.bpf.o")
    progs, maps = bpftool_ids("prog"), bpftool_ids("map")
    prog = XdpProgram(elf, "xdp_oob")
    with pytest.raises(SandboxStartError) as caught:
        await prog.load()
    err = caught.value
    assert "verifier" in err.detail
    assert "invalid access to packet" in err.detail
    assert "invalid access to packet" in err.extra["verifier_log"]
    assert prog.state is ProgramState.FAILED
    assert bpftool_ids("prog") <= progs
    # the map was created before the verifier ran; it must be gone again
    assert all(gone("map", i) for i in bpftool_ids("map") - maps)
    await prog.aclose()
    assert prog.state is ProgramState.CLOSED


async def test_source_that_does_not_compile_carries_clangs_message(tmp_path: Path) -> None:
    require_ebpf()
    src = tmp_path / "broken.bpf.c"
    src.write_text("int f(void) { return undeclared_thing; }\n")
    out = tmp_path / "broken.bpf.o"
    with pytest.raises(PackageError, match="undeclared_thing") as caught:
        await compile_bpf(src, out)
    assert "error:" in caught.value.extra["stderr"]
    assert not out.exists()


async def test_map_rejects_wrongly_sized_keys_and_values(firewall_elf: bytes) -> None:
    async with XdpProgram(firewall_elf, "xdp_firewall") as prog:
        await prog.load()
        with pytest.raises(InvalidRequest, match="16-byte keys"):
            prog.maps["rules"].update(b"\0" * 3, rule(DROP, 1))
        with pytest.raises(InvalidRequest, match="8-byte values"):
            prog.maps["rules"].update(rule_key(IPPROTO_UDP, 1), b"\0")


def test_sockets_made_in_a_namespace_stay_there(veth_pair: VethPair) -> None:
    sock = veth_pair.udp_socket("receiver")
    try:
        assert sock.getsockname()[0] == veth_pair.receiver_ip
    finally:
        sock.close()
    # the address exists only inside the receiver's namespace, not in ours
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as here, pytest.raises(OSError):
        here.bind((veth_pair.receiver_ip, 0))

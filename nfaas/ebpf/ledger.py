"""The attachments nfaas made, kept on disk so that a crash leaves no stray program.

A program on an XDP or tc hook stays in the kernel after the process that
attached it dies: the hook holds it, and its maps with it. An orderly
shutdown detaches everything (``EbpfManager.aclose``); after a crash or a
``kill -9`` nothing would. So every attachment is written here before the
instance is reported ready, and removed when it is detached. At start,
``clean`` takes every recorded program off its hook -- only if the hook
still runs that very program (same interface index, same program id) -- and
the kernel frees it. nfaas cleans rather than re-attaches: the configuration
written into the maps since instantiation is not kept, so a re-attached VNF
would run with empty rules, which is worse than a visible absence.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from nfaas.ebpf import libbpf as lb
from nfaas.ebpf import tc, xdp
from nfaas.ebpf.netns import run_in_netns

log = logging.getLogger(__name__)


class Ledger:
    """A JSON file: instance id -> where its program is attached."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("eBPF ledger %s is unreadable; starting afresh", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def add(self, instance_id: str, record: dict[str, Any]) -> None:
        entries = self.entries()
        entries[instance_id] = record
        self._write(entries)

    def remove(self, instance_id: str) -> None:
        entries = self.entries()
        if entries.pop(instance_id, None) is not None:
            self._write(entries)

    def clean(self) -> list[str]:
        """Detach every recorded program still on its hook; the ids of those taken off."""
        removed: list[str] = []
        for instance_id, record in self.entries().items():
            try:
                if _detach_recorded(record):
                    removed.append(instance_id)
            except (OSError, FileNotFoundError) as exc:
                log.warning("eBPF ledger: cannot clean %s (%s): %s", instance_id, record, exc)
                continue
            except Exception:
                log.exception("eBPF ledger: cannot clean %s (%s)", instance_id, record)
                continue
        self._write({})
        if removed:
            log.warning(
                "detached %d eBPF program(s) left attached by an earlier run: %s",
                len(removed),
                ", ".join(removed),
            )
        return removed


def _detach_recorded(record: dict[str, Any]) -> bool:
    netns = record.get("netns")
    if netns is not None and not (Path("/run/netns") / str(netns)).exists():
        return False  # the namespace went, with its interfaces and their programs

    def detach() -> bool:
        lib = lb.libbpf()
        try:
            ifindex = socket.if_nametoindex(str(record["interface"]))
        except OSError:
            return False  # the interface went, with its program
        if ifindex != record.get("ifindex"):
            return False  # another interface took the name; ours went
        prog_id = int(record["prog_id"])
        if record["kind"] == "xdp":
            return xdp.detach_stray(lib, ifindex, record["mode"], prog_id)
        taken = tc.detach_filter(lib, ifindex, record["direction"], prog_id, "ledger")
        if record.get("created_qdisc"):
            tc.destroy_qdisc_if_empty(lib, ifindex, str(record["interface"]))
        return taken

    return run_in_netns(netns, detach)

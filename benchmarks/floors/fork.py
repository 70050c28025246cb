"""Floor of the process backend: a bare ``os.fork()`` of an interpreter as warm as the zygote.

Run as a script by the same interpreter and flags as the zygote. It imports what
the zygote imports, freezes the collector as the zygote does, then either

* ``cold N``: N times, forks a child that writes one byte to a pipe and exits,
  timing fork -> byte received (the floor of a cold start); or
* ``idle N``: forks N children that block on a pipe, and reads each one's RSS
  and PSS (the floor of an idle instance's memory); or
* ``cow N``: forks a child that writes one byte into each of N pages the parent
  had written, timing the copy-on-write fault per page (what a fresh worker
  pays for each page it first writes);

and prints one JSON object on stdout.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

import nfaas.sandboxes.zygote  # noqa: F401  the zygote's imports (worker, msgpack, orjson, json)


def fork_to_byte(samples: int) -> list[float]:
    out: list[float] = []
    for _ in range(samples):
        r, w = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"x")
            os._exit(0)
        os.read(r, 1)
        out.append(time.monotonic() - started)
        os.close(r)
        os.close(w)
        os.waitpid(pid, 0)
        time.sleep(0.002)  # let the exit settle, as a pool's refill would
    return out


def cow_fault_seconds(pages: int) -> float:
    """Time per first write to a page shared with the parent, in the child."""
    page = os.sysconf("SC_PAGE_SIZE")
    buffer = bytearray(page * pages)
    for i in range(0, len(buffer), page):
        buffer[i] = 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        started = time.perf_counter()
        for i in range(0, len(buffer), page):
            buffer[i] = 2
        first = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(0, len(buffer), page):
            buffer[i] = 3
        again = time.perf_counter() - started
        os.write(w, json.dumps((first - again) / pages).encode())
        os._exit(0)
    result = float(os.read(r, 100))
    os.waitpid(pid, 0)
    return result


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS from status, and Pss/Rss from smaps_rollup, in kB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                found["rss"] = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    found["pss"] = int(line.split()[1])
    except OSError:
        pass
    return found


def idle_children(count: int) -> dict[str, object]:
    r, w = os.pipe()
    pids: list[int] = []
    ready_r, ready_w = os.pipe()
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                os.close(w)
                os.write(ready_w, b"x")
                os.read(r, 1)  # idle until the parent closes the pipe
                os._exit(0)
            pids.append(pid)
        for _ in pids:
            os.read(ready_r, 1)
        time.sleep(0.2)
        children = [proc_memory_kb(pid) for pid in pids]
        return {"children": children, "parent": proc_memory_kb(os.getpid())}
    finally:
        os.close(w)
        for pid in pids:
            os.waitpid(pid, 0)


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    gc.collect()
    gc.freeze()
    if mode == "cold":
        fork_to_byte(min(count, 10))  # warm the page cache and the allocator
        print(json.dumps({"samples": fork_to_byte(count)}))
    elif mode == "cow":
        print(json.dumps({"samples": [cow_fault_seconds(count) for _ in range(5)]}))
    elif mode == "idle":
        print(json.dumps(idle_children(count)))
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()

"""What limits each figure: the prose of ``docs/benchmarks.md``, quoting the run's own numbers.

The reasons were found by profiling when the suite was written (py-spy on the
server under load, timestamps around each step of a cold start); the numbers
quoted are always those of the run being rendered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Section = dict[str, Any]


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms"


def _us(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.0f} µs"


def _phases_table(section: Section) -> str:
    rows = ["| step, taken on the backend directly | p50 | p90 |", "|---|---|---|"]
    for step, s in section["detail"]["phases_ms"].items():
        rows.append(f"| {step} | {_ms(s['p50'])} | {_ms(s['p90'])} |")
    return "\n".join(rows)


def _cpu_table(section: Section, what: str, key: str) -> str:
    cpu = section["detail"][key]
    rows = [f"| CPU time of the serving process per {what} | µs |", "|---|---|"]
    rows += [f"| {name} | {_us(v)} |" for name, v in cpu.items()]
    return "\n".join(rows)


def cold_process(section: Section) -> str:
    d = section["detail"]
    phases = d["phases_ms"]
    faults = d.get("load_minor_faults") or {}
    fault_cost_ms = faults.get("p50", math.nan) * d["cow_fault_us"] / 1000
    return (
        f"From a pool, a cold start is the load of the code into a prepared worker "
        f"(p50 {_ms(phases['load']['p50'])} when taken alone, after the same pause a pooled "
        f"worker has) and the first invocation ({_ms(phases['invoke -> first line']['p50'])}), "
        f"plus the platform's own steps. The load is a round trip on the worker protocol in "
        f"which the worker rebuilds `os.environ`, reads `/proc/self/status` for its memory "
        f"limit and imports the handler. It is the first time the worker runs that path, and in "
        f"a freshly forked child the first write to each page inherited from the zygote is a "
        f"copy-on-write fault: the load takes {faults.get('p50', math.nan):.0f} minor faults in "
        f"the worker; at the {_us(d['cow_fault_us'])} per fault measured in this run on plain "
        f"pages that is about {_ms(fault_cost_ms)}, and more with the cache and TLB misses of "
        f"a cold child (when the suite was written, a second load of another module in the "
        f"same child took about a quarter of the first's time, with a handful of faults). The "
        f"worker's warm-up (`_warm_up`) compiles and runs a throwaway function and looks a "
        f"module up, but imports none from a folder, so the import machinery's pages are still "
        f"shared when the event comes. Without a pool the fork is added "
        f"(prepare {_ms(phases['prepare (not paid from a pool)']['p50'])} alone), yet the two "
        f"paths stay close: a pooled worker has slept since it was prepared, and taking it "
        f"from the pool starts the refill at once, a fork and a warm-up that share the two "
        f"cores with the cold start they replace. The floor is a fork alone: it pays neither a "
        f"load nor a protocol round trip."
    )


def cold_wasm(section: Section) -> str:
    phases = section["detail"]["phases_ms"]
    parts = section["detail"]["floor_parts_ms"]
    return (
        f"The floor instantiates and calls on the calling thread; its parts are the "
        f"instantiation ({_ms(parts['instance']['p50'])}), the export's lookup "
        f"({_ms(parts['exports']['p50'])}: wasmtime-py lists every export with its type) and "
        f"the first call ({_ms(parts['call']['p50'])}). The benchmark's echo has a fuel budget "
        f"and memory small enough to run on the event loop's thread (docs/wasm-abi.md), so no "
        f"step crosses threads: the load (p50 {_ms(phases['load']['p50'])} taken alone, after "
        f"the pause a pooled sandbox has) finds the module compiled at onboarding in the cache, "
        f"checks its exports and instantiates it, and the first call reaches the handler in "
        f"{_ms(phases['invoke -> first line']['p50'])}. Above the floor the platform pays its "
        f"own steps (the node's reservation, the pool, the load's checks of the module, the "
        f"metrics), and each sample starts from an idle machine, whose wake-up is dear on this "
        f"virtual machine (the same load back to back was close to the floor when the inline "
        f"path was written). A function that does not qualify for the inline path keeps a "
        f"thread of its own and pays two thread crossings more."
    )


def _container_table(section: Section) -> str:
    d = section["detail"]
    parts = d["floor_parts_ms"]
    floor = d["floor"]
    rows = [_phases_table(section), "", "| spawn → 1 byte, bare | p50 | p90 |", "|---|---|---|"]
    for label, s in (
        ("runc run + interpreter + worker import (the floor)", floor),
        ("runc run + interpreter, no worker import", parts["no_worker_import"]),
        ("no container: interpreter + worker import", parts["no_container"]),
        ("no container: interpreter alone", parts["interpreter_only"]),
    ):
        rows.append(f"| {label} | {_ms(s['p50'])} | {_ms(s['p90'])} |")
    return "\n".join(rows)


def cold_container(section: Section) -> str:
    d = section["detail"]
    phases, parts, floor = d["phases_ms"], d["floor_parts_ms"], d["floor"]["p50"]
    runc = floor - parts["no_container"]["p50"]
    imports = parts["no_container"]["p50"] - parts["interpreter_only"]["p50"]
    overhead = d["nothing"]["p50"] - floor
    return (
        f"From nothing, almost all of a cold start is the prepare "
        f"({_ms(phases['prepare (not paid from a pool)']['p50'])} p50 alone), and the prepare "
        f"is the floor's own work: runc and a Python that starts and imports the worker. The "
        f"floor's parts (table above) split it: the same command spawned on the host without "
        f"a container takes {_ms(parts['no_container']['p50'])}, so runc (namespaces, mounts, "
        f"cgroups, pivot_root, its own re-exec as `runc init`, then `--detach`) costs about "
        f"{_ms(runc)}; the interpreter alone takes {_ms(parts['interpreter_only']['p50'])} on "
        f"the host, so the worker's imports cost about {_ms(imports)}: the interpreter skips "
        f"`site` (`-S`; with it, and the editable install's finder, the bare interpreter took "
        f"three times as long), and in `-X importtime` (when this text was written) most of "
        f"the rest was `orjson`, `socket`, `traceback` and `typing`. The backend adds {_ms(overhead)} over the floor "
        f"({overhead / floor * 100:.0f}%): the container's init is a module of its own that "
        f"forks the worker, the worker's `ready` round trip, the bundle's config and folders, "
        f"then the load ({_ms(phases['load']['p50'])}: staging the code, writing the cgroup's "
        f"limits, the load frame and the handler's import) and the first invocation "
        f"({_ms(phases['invoke -> first line']['p50'])} to the first line). So the 60 ms goal "
        f"cannot be met by the platform's own steps: it needs a container start well under "
        f"runc's, and fewer imports at start (a worker without orjson), or containers started "
        f"from a warm template. From a pool only the load and "
        f"the first invocation remain (p50 {_ms(d['pool']['p50'])}), and a warm invocation is "
        f"one round trip on the worker protocol ({_ms(d['warm']['p50'])} p50), as with the "
        f"process backend: the container adds nothing once started."
    )


def http(section: Section) -> str:
    return (
        "Events reach functions through a plain-ASGI gateway in front of the REST API "
        "(`nfaas/api/gateway.py`), so they skip the API's route table, middleware and request "
        "objects; the serving process's CPU time per request (table above) is still two to "
        "three times the floor's. What remains is the platform's dispatch (version choice, the "
        "deployment's slot, telemetry) and, for the Python function, a msgpack round trip to a "
        "worker process over a Unix socket: the write wakes a sleeping process and its answer "
        "wakes the loop, system calls that are dear on this virtual machine. At most "
        "`instance_threshold` x `concurrency` (4 x 1) events run at once and the rest wait in "
        "the deployment's queue, while the workers, the load generator and the server share "
        "two cores. The Wasm echo runs on the event loop's thread (a small fuel budget and "
        "memory: docs/wasm-abi.md), so it has no process to wake and no thread to cross, and "
        "is bounded by the loop's own work per request."
    )


def udp(section: Section) -> str:
    return (
        "The platform's event loop saturates first: its CPU time per datagram (table above) "
        "is several times the bare echo's, which answers inside `datagram_received`. Per "
        "datagram the platform starts a task, routes, takes a slot, records telemetry and runs "
        "the function; for the inline Wasm echo that dispatch measured about 36 µs in-process "
        "when this text was written, and the rest is the receive and the reply's `sendto`, "
        "system calls that wake the other side. The Python function adds a round trip to a "
        "worker process per datagram, two more wake-ups: in a py-spy profile of this load the "
        "write to the worker and the reply's `sendto` were about half of the loop's busy time, "
        "and with four workers (instance threshold 4, concurrency 1) the process path stays "
        "at about half the goal. Reaching it would take fewer wake-ups per event (several "
        "events per write to a worker, or more concurrency per worker), not less Python. The "
        "load generator, a Python process, shares the two cores with the server and its "
        "workers; its own ceiling is the floor's throughput."
    )


def memory(section: Section) -> str:
    d = section["detail"]["process"]
    zygote = d["zygote_kb"]
    return (
        f"A worker is a fork of the zygote (RSS {zygote.get('rss', 0) / 1024:.1f} MiB, PSS "
        f"{zygote.get('pss', 0) / 1024:.1f} MiB in this run): its RSS counts every page it "
        f"shares with the zygote and its siblings, so the PSS, its fair share, is what one more "
        f"instance costs. It is above the bare fork's because a worker has written more pages: "
        f"the warm-up, the load (environment, import of the handler) and the first invocation "
        f"each copy the pages they write, and the worker runs a second thread (the hang-up "
        f"watcher) with its own stack. A Wasm instance costs the platform process its store, "
        f"instance and thread; its linear memory is what the module declares (one 64 KiB page "
        f"for the echo) and is resident only where touched."
    )


def cold_microvm(section: Section) -> str:
    d = section["detail"]
    restore, prepare, snapshot = d["floor_restore"], d["prepare"], d["snapshot"]
    memory = d["memory_mb"]
    return (
        f"Everything here runs under TCG (software emulation: this host's `/dev/kvm` is PVM, "
        f"which stock kernels do not boot under). A bare restore of the snapshot answers its "
        f"first `hello` in {_ms(restore['p50'])} p50: QEMU's own start (about 40 ms when this "
        f"text was written), the QMP session that sets `x-ignore-shared` and starts the "
        f"incoming migration, the device state, then the guest's first steps. The backend's "
        f"prepare ({_ms(prepare['p50'])}) adds the clock handshake (at least three `hello`s), "
        f"the reseed of the guest's random state and the drop of root that follows it (code "
        f"a restored guest runs for the first time), and the worker's `ready`. The rest of a cold start from the snapshot "
        f"({_ms(snapshot['p50'])} in all) is the load and the first invocation running code "
        f"the restored guest has not run yet: QEMU translates guest code into host code as it "
        f"first runs, and its translations are not part of the snapshot, so the first load "
        f"after a restore pays for translating the worker's load path, the import machinery, "
        f"the file writes and the kernel's paths under them. A pooled VM has done that in its "
        f"idle time (the agent's rehearsal), so from a pool only the function's own load "
        f"remains ({_ms(d['pool']['p50'])}), and a warm invocation is one round trip over the "
        f"virtio port ({_ms(d['warm']['p50'])}). Under KVM guest code runs natively, so this "
        f"translation cost would not exist; this machine cannot measure that. From nothing, a "
        f"boot is the kernel, the initramfs's unpacking and CPython's start under emulation: "
        f"seconds, {d['nothing']['p50'] / d['floor_boot']['p50'] - 1:+.0%} against the bare "
        f"boot. Memory: a restored VM maps the snapshot's RAM file private, so the pages it only reads are shared with every other VM restored "
        f"from it; its PSS ({memory['ours']['pss']:.1f} MiB, {MEMORY_VMS_TEXT}) is mostly "
        f"QEMU's own heap and the pages the guest wrote since its restore "
        f"({memory['ours']['private']:.1f} MiB private, against "
        f"{memory['floor']['private']:.1f} MiB for a bare restore that only answered `hello`)."
    )


MEMORY_VMS_TEXT = "with three VMs alive"


def ebpf(section: Section) -> str:
    d = section["detail"]
    return (
        f"The floor is one sender process pushing UDP datagrams through a veth pair with no "
        f"program attached: the sender's own rate bounds it. An XDP program that drops a "
        f"packet spares the kernel's network stack, so dropping runs above the floor; a pass "
        f"costs the program's map lookup and per-rule counter on top of the stack. The same "
        f"rule in a Python function behind the platform's UDP trigger costs an event per "
        f"datagram (task, routing, a worker round trip), which is why a kernel data path is "
        f"worth its restrictions for stateless filtering. Loading, verifying and attaching "
        f"the firewall takes {_ms(d['instantiate_load_verify_attach_ms']['p50'])} p50, most of "
        f"it in the kernel's verifier and libbpf's object handling; a rule written through the "
        f"instance encodes the JSON rule into the map's key and value by the descriptor's "
        f"layout on top of the bare map update, and through the HTTP API adds the request."
    )


def keepalive(section: Section) -> str:
    return (
        "These are simulations on synthetic traces, not measurements of the live platform. "
        "The hybrid histogram policy trades memory for cold starts: at its default 4-hour "
        "range it cuts cold starts several-fold but keeps instances longer than fixed 10 "
        "minutes. At the cold-start share of fixed 10 minutes, it saves the most on periodic "
        "functions (timers, batches), whose idle times it learns, and little on Poisson-like "
        "HTTP traffic, whose next arrival no histogram predicts: there it can only trade like "
        "a fixed timer. The forecasting policy pre-warms just before a periodic function's "
        "next batch, which is where it wins; on the Azure-shaped mix it loses to the hybrid "
        "policy at most cold-start shares. The simulator's speed is per policy: a fixed "
        "timer is a vectorised pass, the hybrid policy recomputes percentiles per idle time, "
        "and the forecasting policy refits its models."
    )


def _k(pps: float) -> str:
    return f"{pps / 1e6:.2f} M" if pps >= 1e6 else f"{pps / 1e3:.0f} k"


def nf(section: Section) -> str:
    d = section["detail"]
    b32, b256, b1024 = d["batch_32"], d["batch_256"], d["batch_1024"]
    python = d["per_packet_python_pps"]
    return (
        f"A batch costs a fixed number of NumPy calls, each a few microseconds whatever its "
        f"length, so the rate grows with the batch: the 10-rule firewall did "
        f"{_k(b32['firewall_pps'])}, {_k(b256['firewall_pps'])} and "
        f"{_k(b1024['firewall_pps'])} packets/s at batches of 32, 256 and 1024, against "
        f"{_k(python['firewall'])} for the same firewall written per packet in plain Python; "
        f"the goal of 1 Mpps at batch 256 is "
        f"{'met' if b256['firewall_pps'] >= 1e6 else 'not met'}. A py-spy profile of the "
        f"firewall at batch 256 (taken when this section was added) puts about half of an "
        f"NF's time in `parse` (one strided view of the frames' first 54 bytes, then some "
        f"thirty column reads and writes into the structured header array, each a NumPy call), "
        f"some thirty per cent in the ACL (then about fifty calls: three port and protocol "
        f"lookups, eight calls per distinct prefix, seven for the lowest set bit; since cut "
        f"to about twenty with interval tables for the IPv4 prefixes and a first-rule table) "
        f"and the rest in `filter`'s selection and the counters. "
        f"The source alone (joining the frames into one buffer and computing their offsets) "
        f"made {_k(b256['source_pps'])} packets/s at batch 256: it is not what limits the "
        f"firewall, which ran at {b256['firewall_pps'] / b256['source_pps']:.0%} of it. The "
        f"load balancer gains more over plain Python ({b256['lb_speedup']:.1f} times at "
        f"batch 256 against {b256['firewall_speedup']:.1f} for the firewall) because its "
        f"per-packet work (a flow hash, a connection-table lookup, a rewrite with two checksum "
        f"updates) costs plain Python much more ({_k(python['lb'])} packets/s), while the "
        f"graph pays it in a few more calls per batch."
    )


def _share(row: dict[str, Any]) -> str:
    return f"{row['trigger']['messages_per_s'] / row['floor']['messages_per_s']:.0%}"


def mqtt(section: Section) -> str:
    d = section["detail"]
    q0, q1 = d["qos0_paced"], d["qos1_paced"]
    f0, f1 = d["qos0_flood"], d["qos1_flood"]
    return (
        f"Latency is measured on paced messages: flooded, both receivers queue (p50 "
        f"{_ms(f0['trigger']['latency_ms']['p50'])} for the trigger at QoS 0) and the "
        f"latency says nothing about the trigger. Paced, the trigger adds the crossing from "
        f"paho's network thread to the event loop and a task per message: p50 "
        f"{_ms(q0['trigger']['latency_ms']['p50'])} against "
        f"{_ms(q0['floor']['latency_ms']['p50'])} for the bare subscriber at QoS 0, "
        f"{_ms(q1['trigger']['latency_ms']['p50'])} against "
        f"{_ms(q1['floor']['latency_ms']['p50'])} at QoS 1, where the acknowledgement "
        f"waits for the function. The QoS 0 tail (p99 "
        f"{_ms(q0['trigger']['latency_ms']['p99'])}, floor "
        f"{_ms(q0['floor']['latency_ms']['p99'])}) is the same for both receivers, so "
        f"it lies in the broker and client path, not in the trigger (not profiled further; "
        f"QoS 1, whose acknowledgements keep the connection busy both ways, has no such tail). "
        f"Flooded, the trigger received {_share(f0)} of the bare subscriber's rate at QoS 0 "
        f"({f0['trigger']['messages_per_s']:,.0f} messages/s) and {_share(f1)} at QoS 1. At "
        f"QoS 0 only the receiver bounds the rate, and the trigger pays per message a hop from "
        f"paho's network thread to the event loop (`call_soon_threadsafe`) and a task, which "
        f"the bare subscriber, counting in paho's callback, does not; at QoS 1 each publish "
        f"waits for the broker's acknowledgement, a round trip that bounds both receivers "
        f"alike. On a shared machine the flood rates move between runs more than the paced "
        f"latencies: the publisher is one Python process competing for the same cores."
    )


WHAT_LIMITS: dict[str, Callable[[Section], str]] = {
    "cold-microvm": cold_microvm,
    "ebpf": ebpf,
    "keepalive": keepalive,
    "cold-process": cold_process,
    "cold-wasm": cold_wasm,
    "cold-container": cold_container,
    "http": http,
    "udp": udp,
    "memory": memory,
    "nf": nf,
    "mqtt": mqtt,
}

EXTRA_TABLES: dict[str, Callable[[Section], str]] = {
    "cold-process": _phases_table,
    "cold-wasm": _phases_table,
    "cold-container": _container_table,
    "http": lambda s: _cpu_table(s, "request", "server_cpu_us_per_request"),
    "udp": lambda s: _cpu_table(s, "datagram", "server_cpu_us_per_datagram"),
}

HOW_TO_RUN = """## Running it

```sh
.venv/bin/python benchmarks/run.py                 # everything, ~20 minutes
.venv/bin/python benchmarks/run.py --quick         # fewer samples, ~5 minutes
.venv/bin/python benchmarks/run.py --only http     # one benchmark (cold-process, cold-wasm, cold-container,
                                                   # cold-microvm, http, udp, memory, ebpf, keepalive, nf, mqtt)
.venv/bin/python benchmarks/run.py --write-docs    # run everything, then rewrite this page
.venv/bin/python benchmarks/run.py --write-docs --from benchmarks/results/latest.json
.venv/bin/python benchmarks/run.py --only cold-container --out /tmp/cc.json
.venv/bin/python benchmarks/run.py --write-docs --from benchmarks/results/latest.json --merge /tmp/cc.json
```

`--merge` puts the sections of another run in place of those of the same name, each
marked with its own run's date and command on the page, and writes the merged results
to `--out`.

Results go to `benchmarks/results/latest.json` (`--out`). HTTP load comes from `wrk`
(a Debian package, installed by `scripts/setup`) or, without it, from
`benchmarks/loadgen_http.py`; UDP load from `benchmarks/loadgen_udp.py`. Every server and
load generator binds 127.0.0.1, runs for a bounded time and count, and is stopped at the
end of its benchmark."""

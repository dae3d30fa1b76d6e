#!/usr/bin/python3
"""make bench: measures shmbroker beside its bound and its peers in one run and writes
docs/performance.md. `make bench QUICK=1` runs fewer, shorter trials.

Every row: 2 producers and 1 consumer, 4 slots, every byte written and read, at 64 B to
64 MiB: the bare SysV ring with pipe notifications (bench/move.c --mode ring, the bound),
shmbroker through libshmbroker (--mode lib) and with many batches per request (--mode
many), shmbrokerctl produce/consume, memcpy, and the Python transports of bench/loaders.py
(shmbroker put/iterate and DataLoader, multiprocessing Queue, Pipe and shared_memory,
torch's DataLoader). Then the real-training rows (bench/training.py: examples/train_torch.py's
pipeline with torch's loader and shmbroker's), many batches per request beside the bare
ring with the same slots, the 64-byte handoff beside a bare pair of the same shape
(bench/handoff.c), handoffs/s against slots and idle clients, the daemon's instructions per
handoff (callgrind) and its peak RSS.

The figures, with the commit, date and machine measured, go to docs/performance.json;
bench/report.py makes the page and the data of its plots from them alone (`--replot` redoes
that from the saved figures), and this file draws the plots with matplotlib.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
sys.path.insert(0, str(ROOT / "bench"))

SIZES = [(64, "64 B", 20000), (64 << 10, "64 KiB", 5000), (1 << 20, "1 MiB", 1000), (16 << 20, "16 MiB", 200),
         (64 << 20, "64 MiB", 50)]


def scratch(prefix: str) -> str:
    """A temporary directory of this run, removed when the run ends (profiles, sockets)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


# The library's calls through the daemon, one round trip each: the fast path off.
SOCKET_PATH = dict(os.environ, SHMBROKER_FASTPATH="0")


def move(mode: str, size: int, count: int, sock: str, slots: int = 4, batch: int = 16, env=None) -> float:
    out = subprocess.run([str(BUILD / "move"), "--mode", mode, "--size", str(size), "--count", str(count),
                          "--socket", sock, "--slots", str(slots), "--batch", str(batch)],
                         capture_output=True, text=True, timeout=600, check=True, env=env).stdout
    return float(out.split()[0])


def idle_clients(sock: str, n: int) -> list:
    import socket
    conns = []
    for _ in range(n):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for _ in range(100):
            try:
                c.connect(sock)
                break
            except ConnectionRefusedError:      # bound, not yet listening (a slow start under valgrind)
                time.sleep(0.1)
        c.sendall(b'{"op":"hello","role":"admin","name":"idle"}\n')
        c.recv(4096)
        conns.append(c)
    return conns


def ctl(size: int, count: int, sock: str) -> float:
    """shmbrokerctl: 2 producers, 1 consumer checking every byte; batches/s, wall clock."""
    ctlbin = str(BUILD / "shmbrokerctl")
    name = f"ctl-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run([ctlbin, "--socket", sock, "create", name, "--slot-size", str(size), "--slots", "4"],
                   check=True, capture_output=True)
    try:
        t0 = time.perf_counter()
        cons = subprocess.Popen([ctlbin, "--socket", sock, "consume", name, "--count", str(count // 2 * 2)],
                                stdout=subprocess.DEVNULL)
        prods = [subprocess.Popen([ctlbin, "--socket", sock, "produce", name, "--count", str(count // 2), "--size",
                                   str(size), "--seq-start", str(i * count)], stdout=subprocess.DEVNULL)
                 for i in range(2)]
        if any(p.wait(timeout=600) for p in prods) or cons.wait(timeout=600):
            raise RuntimeError("shmbrokerctl produce/consume failed")
        return count // 2 * 2 / (time.perf_counter() - t0)
    finally:
        subprocess.run([ctlbin, "--socket", sock, "drop", name], capture_output=True)


LAST_PROFILE: dict = {}
PROFILED = ["handle_line", "request_parse", "conn_send", "reply_print", "cJSON_Delete", "sd_event_wait",
            "sd_event_prepare", "op_publish", "op_release", "op_take", "fp_take", "fp_publish", "fp_release",
            "arena_malloc"]


def profile(out: str) -> list:
    """(function, share of the daemon's instructions, inclusive) from a callgrind file."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", out], capture_output=True, text=True).stdout
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].startswith("("):
            continue
        fn = parts[2].split(":")[-1].split("'")[0]
        if fn in PROFILED and fn not in found:
            found[fn] = float(parts[1].strip("(%)"))
    return [(fn, found[fn]) for fn in PROFILED if fn in found]


def client_instructions(quick: bool, sock: str) -> tuple:
    """Instructions per 64-byte handoff in the consumer and in a producer of
    `move --mode many --slots 256 --batch 64`, from callgrind (the clients' share of a
    handoff, beside the daemon's)."""
    count = 4000 if quick else 40000
    tmp = scratch("shmbroker-cgc-")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.%p", str(BUILD / "move"),
                    "--mode", "many", "--size", "64", "--count", str(count), "--slots", "256", "--batch", "64",
                    "--socket", sock], capture_output=True, timeout=900, check=True, env=SOCKET_PATH)
    totals = []
    for f in sorted(Path(tmp).glob("cg.*"), key=lambda f: int(f.name.split(".")[1])):
        totals.append(next(int(l.split()[1]) for l in open(f) if l.startswith(("summary:", "totals:"))))
    consumer, producers = totals[0], totals[1:]
    return consumer / count, sum(producers) / count


def instructions_per_handoff(quick: bool, slots: int = 4, idle: int = 0, mode: str = "lib", batch: int = 16) -> float:
    """The daemon's instructions per 64-byte handoff, from callgrind: two runs of different
    length through a daemon under callgrind, so start-up and shut-down cancel out.
    Instruction counts repeat from run to run, unlike times on a shared machine."""
    totals = []
    counts = (500, 1500) if quick else (2000, 6000)
    for count in counts:
        tmp = scratch("shmbroker-cg-")
        sock, out = os.path.join(tmp, "s.sock"), os.path.join(tmp, "cg.out")
        d = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              str(BUILD / "shmbrokerd"), "--socket", sock, "--config", "/dev/null"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(sock):
            time.sleep(0.05)
        held = idle_clients(sock, idle)
        move(mode, 64, count, sock, slots, batch, env=SOCKET_PATH)
        for c in held:
            c.close()
        d.send_signal(signal.SIGTERM)
        d.wait()
        totals.append(next(int(l.split()[1]) for l in open(out) if l.startswith(("summary:", "totals:"))))
        LAST_PROFILE[(slots, idle, mode, batch)] = out
    return (totals[1] - totals[0]) / (counts[1] - counts[0])


def sized_count(fn, seconds: float, least: int, most: int) -> int:
    """Warm fn(count) -> rate up with @least, and return the count that takes about
    @seconds a trial (within @least..@most): slow transports must not take minutes a trial."""
    return max(least, min(most, int(fn(least) * seconds)))


def sized_trials(fn, n: int, seconds: float, least: int, most: int) -> tuple[float, float, float]:
    """Median, min and max of @n runs of fn(count) -> rate, the count sized by sized_count()."""
    count = sized_count(fn, seconds, least, most)
    rates = sorted(fn(count) for _ in range(n))
    return statistics.median(rates), rates[0], rates[-1]


def interleaved_trials(fns: list, n: int, seconds: float, least: int, most: int) -> list:
    """sized_trials() of several fn(count) -> rate taking turns, trial after trial, so that
    the rows compared with each other see the same machine."""
    counts = [sized_count(fn, seconds, least, most) for fn in fns]
    rates: list = [[] for _ in fns]
    for _ in range(n):
        for fn, count, r in zip(fns, counts, rates):
            r.append(fn(count))
    return [(statistics.median(r), min(r), max(r)) for r in rates]


def machine() -> dict:
    """The machine measured: CPUs this process may run on (as nproc counts them), CPUs
    online, the CPU model, memory, kernel."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) >> 20 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {"host": platform.node(), "nproc": len(os.sched_getaffinity(0)), "online": os.cpu_count(), "cpu": cpu,
            "mem_gib": mem, "kernel": platform.release()}


def plot(path: Path, title: str, xlabel: str, ylabel: str, series: dict, logx: bool = True) -> str | None:
    """A PNG of series {name: [(x, y), ...]}; returns a note to show instead when matplotlib
    is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(no plot: python3-matplotlib is not installed)"
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
    colours = plt.get_cmap("tab20").colors
    markers = "os^vD<>ph*Xd8P"
    for i, (name, pts) in enumerate(series.items()):
        pts = [(x, y) for x, y in pts if y == y]
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker=markers[i % len(markers)], label=name,
                    color=colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
                    linestyle="--" if "ring" in name or "memcpy" in name else "-")
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--replot", action="store_true",
                    help="measure nothing: redraw the report and plots from the figures of the last run")
    args = ap.parse_args()
    figures = Path(args.output).with_suffix(".json")
    # 512 idle clients, torch's shared-memory descriptors: more than the default soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.replot:
        write(json.loads(figures.read_text()), Path(args.output))
        return 0
    commit, dirty = git_state()         # before anything runs: the tree that is measured
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    n = 3 if args.quick else 5
    scale = 0.25 if args.quick else 1.0
    trial_seconds = 0.08 if args.quick else 0.4
    tmp = scratch("shmbroker-bench-")
    sock = os.path.join(tmp, "s.sock")
    daemon = subprocess.Popen([str(BUILD / "shmbrokerd"), "--socket", sock, "--config", "/dev/null"],
                              stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        time.sleep(0.01)
    import loaders                         # bench/loaders.py: the Python transports
    c_rows: dict = {}                     # system -> {size: (median, min, max)}
    py_rows: dict = {}

    def py(fn):
        return lambda size, count: count / fn(size, count)

    c_systems = [("bare ring (C)", lambda size, count: move("ring", size, count, sock)),
                 ("shmbroker C library", lambda size, count: move("lib", size, count, sock)),
                 ("shmbroker C library, socket path",
                  lambda size, count: move("lib", size, count, sock, env=SOCKET_PATH)),
                 ("shmbroker C library, 4 per request",
                  lambda size, count: move("many", size, count, sock, 4, 4, env=SOCKET_PATH)),
                 ("shmbrokerctl produce/consume", lambda size, count: ctl(size, count, sock)),
                 ("memcpy (one copy, 1 process)", lambda size, count: move("memcpy", size, count, sock))]
    py_systems = [("shmbroker put/iterate", py(lambda s, c: loaders.run_sb_put(sock, s, c))),
                  ("shmbroker.DataLoader (__getitem__)", py(lambda s, c: loaders.run_sb_loader(sock, s, c))),
                  ("shmbroker.DataLoader (write_sample)",
                   py(lambda s, c: loaders.run_sb_loader(sock, s, c, in_place=True))),
                  ("multiprocessing.Queue", py(loaders.run_mp_queue)),
                  ("multiprocessing.Pipe.send_bytes", py(loaders.run_mp_pipe)),
                  ("multiprocessing.shared_memory slots", py(loaders.run_mp_shared_memory))]
    if loaders.have_torch():
        py_systems += [(f"torch DataLoader ({st})", py(lambda s, c, st=st: loaders.run_torch(s, c, st)))
                       for st in ("file_descriptor", "file_system")]
    else:
        print("(torch is not installed: apt-get install python3-torch for its rows)", flush=True)

    sizes = SIZES if not args.quick else [x for x in SIZES if x[0] in (64 << 10, 16 << 20)]
    try:
        for size, label, count in sizes:
            # Every system once per round, round after round: each round sees the same
            # machine, so the ratios between rows are not skewed by what else ran when.
            plan = [(name, fn, max(int(count * scale), 20), c_rows) for name, fn in c_systems] + \
                   [(name, fn, loaders.batch_count(size, args.quick), py_rows) for name, fn in py_systems]
            rates: dict = {name: [] for name, _, _, _ in plan}
            counts = {name: sized_count(lambda c, fn=fn: fn(size, c), trial_seconds, max(min(cnt // 10, 200), 24), cnt)
                      for name, fn, cnt, _ in plan}
            for _ in range(n):
                for name, fn, _, _ in plan:
                    rates[name].append(fn(size, counts[name]))
            for name, _, _, rows in plan:
                r = sorted(rates[name])
                rows.setdefault(name, {})[size] = (statistics.median(r), r[0], r[-1])
            print(f"{label:>7}: " + "  ".join(f"{k} {statistics.median(v):.0f}/s" for k, v in rates.items()),
                  flush=True)
        # examples/train_torch.py's pipeline, each run a process of its own (bench/training.py).
        training_rows: dict = {}
        training_trials = 1 if args.quick else 3
        training_config = None
        if loaders.have_torch():
            import training
            training_config = training.config_text()
            training_rows = training.run_rows(sock, args.quick, training_trials,
                                              log=lambda m: print(m, flush=True))
        # Small batches, many per request: against the ring with the same slots, taking turns.
        many = {}
        for slots, batch in ((4, 4), (256, 64)):
            many[(slots, batch)] = tuple(interleaved_trials(
                [lambda c: move("ring", 64, c, sock, slots),
                 lambda c: move("many", 64, c, sock, slots, batch, env=SOCKET_PATH)],
                n, trial_seconds, 2000, 400000))
            print(f"64 B, {slots} slots, {batch} per request: ring {many[(slots, batch)][0][0]:.0f}/s "
                  f"many {many[(slots, batch)][1][0]:.0f}/s", flush=True)
        by_slots = []
        for slots in (4, 64, 1024, 4096):
            by_slots.append((slots, sized_trials(lambda c: move("lib", 64, c, sock, slots, env=SOCKET_PATH), n,
                                                 trial_seconds, 500, 50000)))
            print(f"slots {slots}: {by_slots[-1][1][0]:.1f}/s", flush=True)
        by_clients = []
        held: list = []
        for idle in (1, 16, 128, 512):
            held += idle_clients(sock, idle - len(held))
            by_clients.append((idle, sized_trials(lambda c: move("lib", 64, c, sock, env=SOCKET_PATH), n,
                                                  trial_seconds, 500, 50000)))
            print(f"idle clients {idle}: {by_clients[-1][1][0]:.1f}/s", flush=True)
        for c in held:
            c.close()
        handoff = handoff_figures(subprocess.run(
            [str(BUILD / "handoff-bench"), "--socket", sock, "--seconds", "1" if args.quick else "2",
             "--rounds", "3" if args.quick else "5"], capture_output=True, text=True, timeout=300).stdout.strip())
        prof_loader = subprocess.run([sys.executable, str(ROOT / "bench" / "profile_loader.py"), "--socket", sock,
                                      "--count", "600" if args.quick else "3000"],
                                     capture_output=True, text=True, timeout=600).stdout.strip()
        try:
            clients_ipc = client_instructions(args.quick, sock)
        except (OSError, subprocess.SubprocessError, StopIteration, IndexError):
            clients_ipc = (float("nan"), float("nan"))
        peak_rss = next(int(l.split()[1]) for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmHWM"))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
    ipc = {}
    for key in ((4, 0, "lib", 1), (4096, 0, "lib", 1), (4, 512, "lib", 1), (256, 0, "many", 64)):
        slots, idle, mode, batch = key
        try:
            ipc[key] = instructions_per_handoff(args.quick, slots, idle, mode, batch)
        except (OSError, StopIteration, subprocess.SubprocessError):
            ipc[key] = float("nan")
        print(f"instructions per handoff, {slots} slots, {idle} idle clients, {mode}: {ipc[key]:,.0f}", flush=True)
    data = {
        "commit": commit, "dirty": dirty, "machine": machine(), "time": started, "quick": args.quick,
        "trials": n, "sizes": sizes,
        "c_rows": {k: list(v.items()) for k, v in c_rows.items()},
        "py_rows": {k: list(v.items()) for k, v in py_rows.items()},
        "many": [[list(k), list(v)] for k, v in many.items()],
        "by_slots": by_slots, "by_clients": by_clients, "handoff": handoff,
        "ipc": [[list(k), v] for k, v in ipc.items()], "peak_rss": peak_rss, "prof_loader": prof_loader,
        "clients_ipc": list(clients_ipc),
        "training": training_rows, "training_trials": training_trials,
        "training_config": training_config, "torch": loaders.have_torch(),
        "profiles": {"lib": profile(LAST_PROFILE[(4, 0, "lib", 1)]) if (4, 0, "lib", 1) in LAST_PROFILE else [],
                     "many": profile(LAST_PROFILE[(256, 0, "many", 64)]) if (256, 0, "many", 64) in LAST_PROFILE
                     else []},
    }
    figures.write_text(json.dumps(data, indent=1))
    write(data, Path(args.output))
    return 0


def git_state() -> tuple:
    """(commit, [changed files]) of the tree measured; (None, []) outside a git checkout.
    The report's own outputs do not count as changes: a run rewrites them."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, []
    outputs = {"docs/performance.md", "docs/performance.json", "docs/performance-throughput.png",
               "docs/performance-flatness.png"}
    changed = [line[3:].split(" -> ")[-1] for line in status.splitlines() if line.strip()]
    return commit, [f for f in changed if f not in outputs]


def handoff_figures(text: str) -> dict:
    """bench/handoff.c's output and its figures: (median, min, max) of the bare pair's round
    trips/s per client and of the daemon pair's handoffs/s."""
    out: dict = {"text": text}
    for key, pattern in (("bare", r"bare pair.*?:\s+([\d.]+) round trips/s per client \(([\d.]+)-([\d.]+)\)"),
                         ("shmbroker", r"shmbrokerd pair.*?:\s+([\d.]+) handoffs/s \(([\d.]+)-([\d.]+)\)")):
        m = re.search(pattern, text)
        if m:
            out[key] = [float(x) for x in m.groups()]
    return out


def write(d: dict, output: Path) -> None:
    """docs/performance.md and its plots from the figures @d (bench/report.py)."""
    import report
    notes = {}
    for name, title, xlabel, ylabel, series in report.plots(d):
        note = plot(output.parent / name, title, xlabel, ylabel, series)
        if note:
            notes[name] = note
    output.write_text(report.render(d, notes))
    print(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())

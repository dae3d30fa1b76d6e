"""docs/performance.md from the figures of one `make bench` run.

A pure function of the figures dict that bench/run.py measures and saves beside the report
(docs/performance.json): no measurement, no file, no clock, no environment. `targets()` gives
the verdicts, `render()` the page, `plots()` the data of its plots (bench/run.py draws them).

The rules the page keeps (tests/check-bench-report.py holds it to them, on synthetic figures):
- every target is judged on one row against one peer, both named in the table: the
  DataLoader's rows (samples made by `__getitem__`, or written by `write_sample`) each on
  its own; torch's DataLoader is its faster sharing strategy at that size in this run (its
  lowest CPU per sample for a CPU target); a bare ring has the slots of what it is compared
  with; the 64-byte handoff is a pair of overlapping clients against a bare pair of the
  same shape (bench/handoff.c);
- a verdict is "met" only when the median figure meets the goal, and the figure shown is
  never rounded onto the other side of the goal;
- every sentence that states a figure or a comparison is made from the figures of the run;
  the fixed text says how things are measured, never what came out;
- the page names the commit, the date and the machine measured.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

KiB, MiB = 1 << 10, 1 << 20

RING = "bare ring (C)"
LIB = "shmbroker C library"
LIB_SOCKET = "shmbroker C library, socket path"
MANY4 = "shmbroker C library, 4 per request"
CTL = "shmbrokerctl produce/consume"
MEMCPY = "memcpy (one copy, 1 process)"
PUT = "shmbroker put/iterate"
DL = "shmbroker.DataLoader (__getitem__)"
DLW = "shmbroker.DataLoader (write_sample)"
QUEUE = "multiprocessing.Queue"
PIPE = "multiprocessing.Pipe.send_bytes"
SHM = "multiprocessing.shared_memory slots"
TORCH = "torch DataLoader"               # rows "torch DataLoader (<sharing strategy>)"
# Row names of older figures files, read under today's names.
OLD_NAMES = {"shmbroker.DataLoader": DL}

TRAINING_DATA, TRAINING_MODEL = "data-only", "with the model"
ALL_SIZES = (64, 64 * KiB, MiB, 16 * MiB, 64 * MiB)

NAN = float("nan")


def nan(v) -> bool:
    return v is None or v != v


def size_label(size: int) -> str:
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def rate(v: float) -> str:
    """A rate as the tables print it: thousands separated, a decimal below 100."""
    return "-" if nan(v) else f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


def triple(t) -> str:
    return "-" if not t else f"{rate(t[0])} ({rate(t[1])}-{rate(t[2])})"


def ratio(a, b) -> float:
    """The ratio of the medians of two (median, min, max) figures; nan when one is missing."""
    return a[0] / b[0] if a and b and b[0] else NAN


def ratio_range(a, b) -> tuple:
    """The ratio's range over the trials, pairing a's worst with b's best and the reverse."""
    return (a[1] / b[2], a[2] / b[1]) if a and b and b[1] and b[2] else (NAN, NAN)


class Figures:
    """Read access to a figures dict, as bench/run.py saves it (JSON: lists, not tuples)."""

    def __init__(self, d: dict):
        self.d = d
        self.sizes = [(int(x[0]), x[1]) for x in d.get("sizes", [])]
        self.rows: dict = {}
        for key in ("c_rows", "py_rows"):
            for name, cells in (d.get(key) or {}).items():
                self.rows[OLD_NAMES.get(name, name)] = {int(s): tuple(t) for s, t in cells}
        self.many = {tuple(k): (tuple(r), tuple(m)) for k, r, m in
                     ((x[0], x[1][0], x[1][1]) for x in d.get("many", []))}
        self.ipc = {tuple(k): v for k, v in d.get("ipc", [])}
        self.training = d.get("training") or {}

    def at(self, row: str, size: int):
        return self.rows.get(row, {}).get(size)

    def torch_rows(self) -> list:
        return [n for n in self.rows if n.startswith(TORCH)]

    def fastest(self, names, size: int):
        """The fastest of @names measured at @size (None when none is)."""
        got = [n for n in names if self.at(n, size)]
        return max(got, key=lambda n: self.at(n, size)[0]) if got else None

    def torch_at(self, size: int):
        return self.fastest(self.torch_rows(), size)

    def handoff(self) -> dict:
        h = self.d.get("handoff")
        return h if isinstance(h, dict) else {"text": h or ""}

    def training_ref(self, mode: str, key: str, best=max):
        """torch's best strategy in @mode on figure @key (max for samples/s, min for CPU)."""
        rows = self.training.get(mode, {})
        names = [n for n in rows if n.startswith(TORCH)]
        return best(names, key=lambda n: rows[n][key][0]) if names else None


@dataclass
class Target:
    where: str              # the size or setting: "16 MiB", "training pipeline, data-only"
    what: str               # what the goal is of: "of the bare ring", "torch's DataLoader"
    row: str                # the row judged, as the page names it
    peer: str               # what it is compared with, as the page names it ("" for nothing)
    value: float            # the figure judged (nan: not measured)
    op: str                 # ">=", ">" or "<="
    bound: float
    unit: str               # "%", "x" or "+%"
    spread: tuple = (NAN, NAN)  # the figure's range over the trials, when it has one
    note: str = ""          # why this peer: "the faster of torch's 2 sharing strategies at 16 MiB"

    @property
    def verdict(self) -> str:
        if nan(self.value):
            return "not measured"
        return "met" if meets(self.value, self.op, self.bound) else "missed"

    @property
    def goal(self) -> str:
        b = f"{self.bound:.0%}" if self.unit in ("%", "+%") else f"{self.bound:g}x"
        return f"{self.where}: {self.op} {b} {self.what}"

    def show(self, v: float | None = None) -> str:
        """@v (the judged figure by default) in the target's unit; the judged figure with as
        many digits as it takes for the text not to land on the other side of the goal."""
        judged = v is None
        v = self.value if judged else v
        if nan(v):
            return "not measured"
        scale, suffix = (100, "%") if self.unit in ("%", "+%") else (1, "x")
        sign = "+" if self.unit == "+%" else ""
        for extra in range(0, 8):
            digits = extra + (2 if self.unit == "x" else 0)
            text = f"{v * scale:{sign}.{digits}f}"
            if not judged or meets(float(text) / scale, self.op, self.bound) == meets(v, self.op, self.bound):
                return text + suffix
        return f"{v * scale!r}{suffix}"

    def measured(self) -> str:
        if nan(self.value):
            return "not measured"
        lo, hi = self.spread
        return self.show() + ("" if nan(lo) or nan(hi) else f" ({self.show(lo)} to {self.show(hi)})")


def meets(v: float, op: str, bound: float) -> bool:
    return {">=": v >= bound, ">": v > bound, "<=": v <= bound}[op]


def _vs(f: Figures, where: str, what: str, size: int, row: str, peer: str | None, op: str, bound: float,
        unit: str, note: str = "") -> Target:
    a, b = f.at(row, size), f.at(peer, size) if peer else None
    return Target(where, what, row, peer or "", ratio(a, b), op, bound, unit, ratio_range(a, b), note)


def _torch_peer(f: Figures, size: int) -> tuple:
    """(row, why) of torch's faster sharing strategy at @size."""
    best = f.torch_at(size)
    if not best:
        return None, ""
    n = len([r for r in f.torch_rows() if f.at(r, size)])
    return best, (f"the faster of torch's {n} sharing strategies at {size_label(size)}" if n > 1 else
                  "the only strategy of torch's measured")


def ipc_label(key) -> str:
    slots, idle, mode, batch = key
    return f"{slots} slots, {idle} idle clients, " + ("one slot per request" if mode == "lib" else
                                                      f"{batch} per request")


HANDOFF_ROW, HANDOFF_PEER = "shmbrokerd pair", "bare pair"


def targets(d: dict) -> list:
    """Every target with its verdict, each from its own row against a like-for-like peer."""
    f = Figures(d)
    T = []
    big, k64, m1 = 16 * MiB, 64 * KiB, MiB
    T.append(_vs(f, "16 MiB", "of the bare ring", big, LIB, RING, ">=", 0.9, "%"))
    T.append(_vs(f, "16 MiB", "of the bare ring", big, PUT, RING, ">=", 0.85, "%"))
    T.append(_vs(f, "16 MiB", "multiprocessing.Queue", big, PUT, QUEUE, ">=", 30, "x"))
    for size in (big, k64):
        peer, why = _torch_peer(f, size)
        for row in (DL, DLW):
            T.append(_vs(f, size_label(size), "torch's DataLoader", size, row, peer, ">=", 5, "x", why))
    for size in (k64, m1):
        T.append(_vs(f, size_label(size), "hand-written shared_memory slots", size, PUT, SHM, ">=", 1.2, "x"))
    for size in ALL_SIZES:                  # every size, measured or not (a QUICK run measures two)
        label = size_label(size)
        peer = f.fastest((PIPE, QUEUE), size)
        T.append(_vs(f, label, "the faster of multiprocessing Pipe and Queue", size, PUT, peer, ">", 1, "x",
                     f"the faster of the two at {label}" if peer else ""))
    for size, bound in ((64, 0.5), (k64, 0.5), (m1, 0.8)):
        T.append(_vs(f, size_label(size), "of the bare ring, one batch per call", size, LIB, RING, ">=", bound, "%"))
    T.append(_vs(f, "1 MiB", "of the bare ring", m1, CTL, RING, ">=", 0.7, "%"))
    T += _training_targets(f)
    h = f.handoff()
    bare, pair = h.get("bare"), h.get("shmbroker")
    T.append(Target("64 B, one handoff", "of a bare pair of the same shape", HANDOFF_ROW, HANDOFF_PEER,
                    ratio(pair, bare), ">=", 0.8, "%", ratio_range(pair, bare),
                    "two clients' round trips overlapping through one server, as the pair's do"))
    ring, many = f.many.get((256, 64), (None, None))
    T.append(Target("64 B, many per request", "of the bare ring with the same slots",
                    "move --mode many --slots 256 --batch 64", "move --mode ring --slots 256",
                    ratio(many, ring), ">=", 0.5, "%", ratio_range(many, ring)))
    for (label, key, base) in (("4 to 4,096 slots", (4096, 0, "lib", 1), (4, 0, "lib", 1)),
                               ("0 to 512 idle clients", (4, 512, "lib", 1), (4, 0, "lib", 1))):
        a, b = f.ipc.get(key), f.ipc.get(base)
        spread = max(a, b) / min(a, b) - 1 if not nan(a) and not nan(b) and min(a, b) > 0 else NAN
        T.append(Target(f"flat, {label}", "apart (daemon instructions per handoff)", ipc_label(key), ipc_label(base),
                        spread, "<=", 0.10, "+%"))
    return T


def _training_targets(f: Figures) -> list:
    data = f.training.get(TRAINING_DATA, {})
    fast = f.training_ref(TRAINING_DATA, "samples_per_s", max)
    frugal = f.training_ref(TRAINING_DATA, "cpu_per_1000", min)
    T = []

    def rel(row, ref, key):
        a, b = data.get(row), data.get(ref)
        return (a[key][0] / b[key][0], (a[key][1] / b[key][2], a[key][2] / b[key][1])) if a and b and b[key][0] \
            else (NAN, (NAN, NAN))
    for row, bound in ((DL, 1.5), (DLW, 2)):
        v, sp = rel(row, fast, "samples_per_s")
        T.append(Target("training pipeline, data-only", "torch's samples/s", row, fast or "", v, ">=", bound, "x",
                        sp, "torch's faster strategy, data-only" if fast else ""))
    for row in (DL, DLW):
        v, sp = rel(row, frugal, "cpu_per_1000")
        T.append(Target("training pipeline, data-only", "torch's CPU per sample", row, frugal or "", v, "<=", 0.7,
                        "x", sp, "torch's strategy with the least CPU per sample, data-only" if frugal else ""))
    return T


def plots(d: dict) -> list:
    """[(file name, title, x label, y label, {series: [(x, y)]})] of the page's plots."""
    f = Figures(d)
    gbps = {name: [(size, cells[size][0] * size / 1e9) for size, _ in f.sizes if size in cells]
            for name, cells in f.rows.items()}
    return [("performance-throughput.png", "GB/s against batch size (2 producers, 1 consumer)",
             "batch size (bytes)", "GB/s", gbps),
            ("performance-flatness.png", "64-byte handoffs/s against slots and idle clients",
             "slots, or idle clients", "handoffs/s",
             {"against slots": [(k, v[0]) for k, v in d.get("by_slots", [])],
              "against idle clients": [(k, v[0]) for k, v in d.get("by_clients", [])]})]


def provenance(d: dict) -> str:
    """The sentence naming what was measured: commit, date, machine."""
    commit = d.get("commit")
    if commit:
        dirty = d.get("dirty") or []
        state = (f", with uncommitted changes to {len(dirty)} file(s): " + ", ".join(f"`{p}`" for p in dirty[:8]) +
                 (", ..." if len(dirty) > 8 else "") + " (**dirty**)") if dirty else " (clean tree)"
        what = f"commit `{commit}`{state}"
    else:
        what = "a tree whose commit was not recorded"
    m = d.get("machine")
    if isinstance(m, dict):
        mtext = (f"{m.get('host', '?')}: {m.get('nproc', '?')} CPUs available (nproc) of {m.get('online', '?')} "
                 f"online, {m.get('cpu', '?')}, {m.get('mem_gib', '?')} GiB, Linux {m.get('kernel', '?')}")
    else:
        mtext = m or "not recorded"
    trials = d.get("trials", "?")
    return (f"Measured: {what}, on {d.get('time', 'an unrecorded date')}, on {mtext}. {trials} trials per row "
            f"after a warm-up{' (QUICK: fewer sizes, shorter trials)' if d.get('quick') else ''}.")


def _cell(t: Target) -> list:
    return [t.goal, f"`{t.row}`", (f"`{t.peer}`" + (f" ({t.note})" if t.note else "")) if t.peer else "-",
            t.measured(), f"**{t.verdict}**" if t.verdict == "missed" else t.verdict]


def _misses(f: Figures, T: list) -> list:
    missed = [t for t in T if t.verdict == "missed"]
    unmeasured = [t for t in T if t.verdict == "not measured"]
    measured = len(T) - len(unmeasured)
    L = [f"Missed in this run: {len(missed)} of the {measured} targets measured (in bold)." if missed else
         f"Every measured target was met in this run ({measured} of {len(T)}).", ""]
    q = next((t for t in missed if t.peer == QUEUE and t.row == PUT), None)
    bound = ratio(f.at(RING, 16 * MiB), f.at(QUEUE, 16 * MiB))
    if q and not nan(bound) and bound < q.bound:
        L += [f"The bare ring itself ran at {bound:.1f}x `{QUEUE}` at 16 MiB in this run, below the "
              f"{q.bound:g}x asked of `{PUT}`.", ""]
    if unmeasured:
        L += ["Not measured in this run: " + "; ".join(f"{t.goal} (`{t.row}`)" for t in unmeasured) + ".", ""]
    return L


def _training(f: Figures, d: dict) -> list:
    tr = f.training
    head = ["## Real training: examples/train_torch.py's pipeline", ""]
    if not tr:
        why = " (torch is not installed: apt-get install python3-torch)" if d.get("torch") is False else ""
        return head + [f"Not measured in this run{why}.", ""]
    refs = {m: (f.training_ref(m, "samples_per_s", max), f.training_ref(m, "cpu_per_1000", min))
            for m in (TRAINING_DATA, TRAINING_MODEL)}
    rows = list(dict.fromkeys(n for mode in tr.values() for n in mode))
    config = d.get("training_config")

    def cell(mode, row, key, unit):
        fig = tr.get(mode, {}).get(row)
        if not fig:
            return "-"
        med, lo, hi = fig[key]
        ref = {"samples_per_s": refs[mode][0], "cpu_per_1000": refs[mode][1]}.get(key)
        base = tr.get(mode, {}).get(ref) if ref else None
        rel = f", {med / base[key][0]:.2f}x" if base and base[key][0] and row != ref else ""
        return f"{unit.format(med)} ({unit.format(lo)}-{unit.format(hi)}){rel}"

    L = head + [
        "`bench/training.py` (`make bench` runs it; `/usr/bin/python3 bench/training.py [--quick]` alone):",
        "the dataset of examples/train_torch.py, whose `__getitem__` decodes a PNG-like image",
        "(zlib and the Sub filter), crops it at random, flips it half of the time and normalises",
        f"it{'; ' + config if config else ''}. \"data-only\" reads every byte of each",
        "batch and nothing else; \"with the model\" trains",
        "the example's small CNN on it. samples/s counts the steps after the warm-up; CPU is the",
        "user + system time over those same steps of every process of the pipeline (the trainer,",
        "its loader workers, and for shmbroker the daemon), from /proc; peak RSS is the trainer's.",
        f"Each run is a process of its own; median (min-max) of {d.get('training_trials', '?')} round(s), the",
        "configurations taking turns. In each mode, samples/s are given as a ratio to torch's faster",
        "sharing strategy in that mode, and CPU per sample as a ratio to torch's strategy with the least",
        "CPU per sample in that mode:",
        "",
    ]
    for m in (TRAINING_DATA, TRAINING_MODEL):
        if tr.get(m):
            L.append(f"- {m}: samples/s against **{refs[m][0] or 'not measured'}**, CPU against "
                     f"**{refs[m][1] or 'not measured'}**.")
    L += ["",
          "| loader | data-only samples/s | CPU s per 1,000 samples | peak RSS MiB | with the model samples/s "
          "| CPU s per 1,000 samples | peak RSS MiB |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        name = row.replace("(__getitem__)", "(`__getitem__`)").replace("(write_sample)", "(`write_sample`)")
        L.append(f"| {name} | " + " | ".join(cell(mode, row, key, unit) for mode in (TRAINING_DATA, TRAINING_MODEL)
                                            for key, unit in (("samples_per_s", "{:,.0f}"),
                                                              ("cpu_per_1000", "{:.3f}"),
                                                              ("peak_rss_mib", "{:.0f}"))) + " |")
    L.append("")
    for m in (TRAINING_DATA, TRAINING_MODEL):
        rows_m = tr.get(m, {})
        fast, frugal = refs[m]
        parts = []
        for row, label in ((DL, "`__getitem__`"), (DLW, "`write_sample`")):
            a = rows_m.get(row)
            if not a:
                continue
            bits = []
            if fast and rows_m[fast]["samples_per_s"][0]:
                bits.append(f"{a['samples_per_s'][0] / rows_m[fast]['samples_per_s'][0]:.2f}x the samples/s of "
                            f"`{fast}`")
            if frugal and rows_m[frugal]["cpu_per_1000"][0]:
                bits.append(f"{a['cpu_per_1000'][0] / rows_m[frugal]['cpu_per_1000'][0]:.2f}x the CPU per sample "
                            f"of `{frugal}`")
            if bits:
                parts.append(f"with {label}, " + " and ".join(bits))
        if parts:
            L.append(f"{m[0].upper() + m[1:]}, shmbroker's loader ran: " + "; ".join(parts) + ".")
        rates = [(fig["samples_per_s"][0], n) for n, fig in rows_m.items()]
        if len(rates) > 1:
            lo, hi = min(rates), max(rates)
            if lo[0]:
                L.append(f"{m[0].upper() + m[1:]}, the slowest loader was `{lo[1]}` ({lo[0]:,.0f} samples/s) and "
                         f"the fastest `{hi[1]}` ({hi[0]:,.0f} samples/s), {hi[0] / lo[0]:.2f}x it.")
    return L + [""]


def _per_size(f: Figures) -> list:
    """One generated line per size: the fastest peer and the shmbroker rows against it."""
    peers = (QUEUE, PIPE, SHM, *f.torch_rows())
    L = []
    for size, label in f.sizes:
        best = f.fastest(peers, size)
        bits = []
        if best:
            vs = [f"`{r}` {ratio(f.at(r, size), f.at(best, size)):.2f}x it" for r in (PUT, DL, DLW) if f.at(r, size)]
            bits.append(f"the fastest peer was `{best}` ({rate(f.at(best, size)[0])}/s)" +
                        (": " + ", ".join(vs) if vs else ""))
        if bits:
            L.append(f"- {label}: " + "; ".join(bits) + ".")
    return L


def _fast_path(f: Figures) -> list:
    """Generated lines: the library on the fast path against itself through the daemon."""
    L = []
    for size, label in f.sizes:
        fast, sock, ring = f.at(LIB, size), f.at(LIB_SOCKET, size), f.at(RING, size)
        if fast and sock and ring:
            L.append(f"- {label}: {ratio(fast, sock):.2f}x the socket path; {ratio(fast, ring):.0%} of the bare ring, "
                     f"against {ratio(sock, ring):.0%} through the daemon.")
    return L


def _first_function(block: str) -> tuple:
    """(rate, function) of one block of bench/profile_loader.py's output: its batches/s and
    the function with the most own time (the first row under the header)."""
    m = re.search(r":\s*([\d.]+) batches/s", block)
    lines = block.splitlines()
    head = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), None)
    fn = None
    if head is not None and head + 1 < len(lines):
        parts = lines[head + 1].split(None, 5)
        fn = parts[5] if len(parts) == 6 else None
    return (float(m.group(1)) if m else NAN), fn


def render(d: dict, plot_notes: dict | None = None) -> str:
    """The page, from the figures dict @d alone. @plot_notes: {plot file name: text to show
    instead of the image} for plots that could not be drawn."""
    f = Figures(d)
    T = targets(d)
    plot_notes = plot_notes or {}
    images = {name: plot_notes.get(name, f"![{title}]({name})") for name, title, *_ in plots(d)}
    L = [
        "# shmbroker performance",
        "",
        "Generated by `make bench` (`make bench QUICK=1` for a short run: fewer sizes and trials);",
        "every figure on this page comes from one run on one machine, so the ratios between rows",
        "are what to read. Each figure is the median of the trials, with min and max.",
        "",
        provenance(d),
        "The figures are also in `performance.json`; `bench/run.py --replot` redraws this page and",
        "its plots from them (bench/report.py makes the page from the figures alone).",
        "",
        "## Targets",
        "",
        "Each target is judged on the median of the row it names, against the peer it names: torch's",
        "DataLoader is its faster sharing strategy at that size in this run (its least CPU per sample",
        "for a CPU target), a bare ring has the same slots as the row it is compared with. The range",
        "pairs the row's worst trial with the peer's best, and the reverse.",
        "",
        "| target | row judged | against | measured (range) | verdict |",
        "| --- | --- | --- | --- | --- |",
        *["| " + " | ".join(_cell(t)) + " |" for t in T],
        "",
        *_misses(f, T),
        *_training(f, d),
        "## Every transport, 2 producers, 1 consumer, 4 slots, every byte written and read",
        "",
        "C rows: `build/move --mode ring|lib|many|memcpy --size BYTES --count N` (bench/move.c) and",
        "`shmbrokerctl produce/consume` (every byte checked against a per-batch pattern). The",
        "library's rows run on the fast path (docs/protocol.md, \"The fast path\"), as it does by",
        "default, but `socket path` and `4 per request`, which run with `SHMBROKER_FASTPATH=0`: every",
        "call a round trip to the daemon. Python",
        "rows: the functions of bench/loaders.py (16 samples a batch for the loaders; torch is",
        "Debian's python3-torch when installed, with each of its sharing strategies).",
        "`shmbroker.DataLoader (__getitem__)` makes samples with `__getitem__` and copies them into",
        "the batch, as torch does; `(write_sample)` writes them in place. At each size every system",
        "runs once per round, round after round, so that all rows share the machine's ups and downs.",
        "The bare ring: a SysV segment with slot numbers passed through two pipes, no daemon. memcpy",
        "is one process copying each batch once. Batches/s, median (min-max); GB/s; and the share",
        "of the bare ring.",
        "",
    ]
    systems = list(f.rows)
    L += ["| system | " + " | ".join(label for _, label in f.sizes) + " |",
          "| --- | " + " | ".join("---" for _ in f.sizes) + " |"]
    for name in systems:
        cells = []
        for size, _ in f.sizes:
            r = f.at(name, size)
            cells.append(f"{triple(r)}<br>{r[0] * size / 1e9:.3f} GB/s, {ratio(r, f.at(RING, size)):.0%} of ring"
                         if r else "-")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L += ["", images["performance-throughput.png"], ""]
    fast = _fast_path(f)
    if fast:
        L += ["## The fast path and what it costs",
              "",
              "`shmbroker C library` runs acquire, publish, consume and release on the pool's control",
              "block (docs/protocol.md, \"The fast path\"): under the block's futex lock, each store first",
              "written to an undo log, a wait asleep on the member's own futex word, the daemon not on",
              "the way. `shmbroker C library, socket path` is the same program with",
              "`SHMBROKER_FASTPATH=0`: one round trip to the daemon per call. What the fast path costs:",
              "a second segment per pool (64 bytes per slot and per possible member, up to 1 MiB of",
              "metas; status shows it as `block_bytes`), the undo log's stores on every operation, and,",
              "while socket clients wait in a pool that fast clients serve, one look of the daemon at",
              "that pool every millisecond. In this run, the library on the fast path ran:",
              "", *fast, ""]
    per_size = _per_size(f)
    if per_size:
        L += ["In this run (peers: multiprocessing Queue, Pipe and shared_memory slots, torch's DataLoader):",
              "", *per_size, ""]
    L += [
        "## Small batches, many per request",
        "",
        "64-byte batches through the daemon (`SHMBROKER_FASTPATH=0`);",
        "`build/move --mode many --slots S --batch K` pipelines",
        "`publish(batches)` with `acquire(max)` and `release(slots)` with `consume(max)`",
        "(docs/protocol.md, \"Several slots per request\"), beside `build/move --mode ring --slots S`,",
        "the bare ring with the same slots. With 4 slots no request can carry more than 4 batches.",
        "",
        "| slots, batches per request | bare ring handoffs/s | shmbroker handoffs/s | shmbroker / ring |",
        "| --- | --- | --- | --- |",
        *[f"| {sl}, {b} | {triple(r)} | {triple(m)} | {ratio(m, r):.0%} |" for (sl, b), (r, m) in f.many.items()],
        "",
    ]
    r4, r256 = f.many.get((4, 4)), f.many.get((256, 64))
    if r4 and r256:
        L += [f"In this run the bare ring with 256 slots ran {ratio(r256[0], r4[0]):.2f}x its rate with 4 slots, "
              f"and shmbroker with 256 slots and 64 a request {ratio(r256[1], r4[1]):.2f}x its rate with 4 slots "
              "and 4 a request.", ""]
    h = f.handoff()
    L += [
        "## 64-byte handoffs through the daemon beside a bare pair of the same shape",
        "",
        "`build/handoff-bench --socket PATH` (bench/handoff.c). Through the daemon: one producer",
        "(publish pipelined with the next acquire) and one consumer (release pipelined with the next",
        "consume), one round trip each per handoff, the two clients' round trips overlapping. The",
        "bare pair: one echo server process and two client processes, each client in a loop of one",
        "64-byte request and its reply over its own Unix socket, so that the two clients' round trips",
        "overlap in the same way; its figure is round trips per second per client. The two run in",
        "alternate rounds.",
        "",
        "```",
        h.get("text", "") or "not measured",
        "```",
        "",
    ]
    by_slots = [(k, tuple(v)) for k, v in d.get("by_slots", [])]
    by_clients = [(k, tuple(v)) for k, v in d.get("by_clients", [])]
    L += [
        "## Handoffs/s against slots and idle clients",
        "",
        "64-byte batches through the daemon (`SHMBROKER_FASTPATH=0`: the daemon's cost is what these",
        "sections measure), `build/move --mode lib --slots N` (2 producers, 1 consumer); idle clients are",
        "connections that said hello and wait. The flatness targets are judged on the daemon's",
        "instructions per handoff (callgrind, the next table), not on these times.",
        "",
        "| slots | handoffs/s (min-max) | | idle clients | handoffs/s (min-max) |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {a} | {triple(ra)} | | {b} | {triple(rb)} |" for (a, ra), (b, rb) in zip(by_slots, by_clients)],
        "",
        images["performance-flatness.png"],
        "",
    ]
    for what, series in (("slots", by_slots), ("idle clients", by_clients)):
        if len(series) > 1:
            lo, hi = min(series, key=lambda x: x[1][0]), max(series, key=lambda x: x[1][0])
            L.append(f"Against {what}, the medians ran from {rate(lo[1][0])}/s ({lo[0]} {what}) to "
                     f"{rate(hi[1][0])}/s ({hi[0]} {what}), {hi[1][0] / lo[1][0] - 1:.0%} apart.")
    L += [
        "",
        "| configuration | daemon instructions per handoff |",
        "| --- | --- |",
        *[f"| {ipc_label(k)} | {rate(v)} |" for k, v in f.ipc.items()],
        "",
        "## The daemon's own cost",
        "",
        "Instructions per 64-byte handoff through the daemon (acquire, publish, consume, release, each",
        "a request: `SHMBROKER_FASTPATH=0`) are measured with",
        "`valgrind --tool=callgrind` as the difference of two runs of different length, so start-up",
        "and shut-down cancel out. Where they go (share of all the daemon's instructions, inclusive,",
        "`callgrind_annotate --inclusive=yes`), one slot per request (4 slots) and 64 per request",
        "(256 slots):",
        "",
    ]
    prof = [tuple(x) for x in (d.get("profiles") or {}).get("lib", [])]
    prof_many = dict(tuple(x) for x in (d.get("profiles") or {}).get("many", []))
    if prof:
        L += ["| function | one per request | 64 per request |", "| --- | --- | --- |",
              *[f"| `{fn}` | {pct:.1f}% | {prof_many.get(fn, NAN):.1f}% |" for fn, pct in prof], ""]
        inner = [(fn, pct) for fn, pct in prof if fn not in ("handle_line", "sd_event_wait", "sd_event_prepare")]
        if inner:
            top = max(inner, key=lambda x: x[1])
            L += [f"In this run, with one slot per request, the largest share among the functions listed, "
                  f"`handle_line` and the event loop's aside, went to `{top[0]}` ({top[1]:.1f}%).", ""]
    else:
        L += ["Not measured in this run (valgrind's callgrind_annotate gave nothing).", ""]
    cons, prods = (list(d.get("clients_ipc") or []) + [NAN, NAN])[:2]
    L += ["The clients' share, from callgrind on `build/move --mode many --slots 256 --batch 64`: "
          f"**{rate(cons)}** instructions per handoff in the consumer and **{rate(prods)}** in the producers "
          f"together, beside the daemon's **{rate(f.ipc.get((256, 0, 'many', 64), NAN))}**.", ""]
    prof_loader = d.get("prof_loader") or ""
    L += [
        "## Python at small batches",
        "",
        "`/usr/bin/python3 bench/profile_loader.py --socket PATH`: one DataLoader worker's loop",
        "alone (pipelined publishing, samples written in place), then the trainer of a loader with",
        "two workers; cProfile, top functions by own time, 64 KiB batches.",
        "",
        "```",
        prof_loader or "not measured",
        "```",
        "",
    ]
    blocks = [b for b in re.split(r"\n\s*\n", prof_loader) if "batches/s" in b]
    if len(blocks) == 2:
        (w_rate, w_fn), (t_rate, t_fn) = (_first_function(b) for b in blocks)
        if not nan(w_rate) and not nan(t_rate) and w_rate:
            L.append(f"Under cProfile, the trainer with two workers took {t_rate / w_rate:.2f}x the batches/s of "
                     "one worker alone.")
        if w_fn and t_fn:
            L.append(f"The most own time: the worker's in `{w_fn}`, the trainer's in `{t_fn}`.")
        L.append("")
    peak = d.get("peak_rss")
    L += [f"Peak RSS of the daemon over this whole run: **{peak / 1024:.1f} MiB**." if peak else
          "Peak RSS of the daemon: not measured.", ""]
    return "\n".join(L)

#!/usr/bin/python3
"""The real-training rows of make bench: examples/train_torch.py's pipeline (PNG-like
decoding, random crop and flip, normalisation; a small CNN) fed by torch's DataLoader
with each of its sharing strategies and by shmbroker.DataLoader with samples made by
``__getitem__`` and written in place by ``write_sample``; data-only and with the model.

    /usr/bin/python3 bench/training.py [--socket PATH | --daemon build/shmbrokerd] [--quick]

Each figure: samples/s after the warm-up steps; CPU seconds per 1,000 samples of every
process of the pipeline over those same steps (the trainer, its loader workers, and for
shmbroker the daemon: /proc's utime + stime, so threads are counted); the trainer's peak
RSS. Every run is a process of its own (``--one``), so that peak RSS is that run's alone
and no loader or sharing strategy carries over to the next; the configurations take
turns, round after round, so all see the same machine.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "client" / "python"))

# The pipeline: examples/train_torch.py's defaults.
BATCH, IMAGE, WORKERS = 64, 64, 2
STRATEGIES = ("file_descriptor", "file_system")
LOADERS = [(f"torch DataLoader ({st})", {"loader": "torch", "strategy": st}) for st in STRATEGIES] + [
    ("shmbroker.DataLoader (__getitem__)", {"loader": "shmbroker"}),
    ("shmbroker.DataLoader (write_sample)", {"loader": "shmbroker", "write_sample": True})]
MODES = [("data-only", True), ("with the model", False)]


def steps(data_only: bool, quick: bool) -> int:
    """Steps a run: a few seconds of the steady state on two cores (the model is ~100x
    slower a step than the data alone)."""
    return (100 if quick else 300) if data_only else (10 if quick else 30)


def measure(cfg: dict) -> dict:
    """One run of examples/train_torch.py's pipeline in this process, as @cfg says (loader,
    strategy, write_sample, data_only, steps, socket): train()'s figures."""
    import numpy as np
    import torch

    import train_torch as tt
    if cfg.get("strategy"):
        torch.multiprocessing.set_sharing_strategy(cfg["strategy"])
    if cfg.get("socket"):
        os.environ["SHMBROKER_SOCKET"] = cfg["socket"]
    batch, workers = cfg.get("batch_size", BATCH), cfg.get("workers", WORKERS)
    warmup = 2 * workers
    torch.manual_seed(0)
    np.random.seed(0)
    kind = tt.SyntheticImagesInPlace if cfg.get("write_sample") else tt.SyntheticImages
    dataset = kind((warmup + cfg["steps"]) * batch, cfg.get("image_size", IMAGE))
    model = optimizer = None
    if not cfg["data_only"]:
        model = tt.make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    extra = [tt.daemon_pid(cfg.get("socket"))] if cfg["loader"] == "shmbroker" else []
    loader = tt.make_loader(cfg["loader"], dataset, batch, workers, generator=torch.Generator().manual_seed(0))
    try:
        return tt.train(loader, cfg["steps"], warmup, model, optimizer, extra_pids=extra)
    finally:
        if hasattr(loader, "close"):
            loader.close()


def measure_in_process(cfg: dict, timeout: float = 600) -> dict:
    """measure(@cfg) in a fresh Python process."""
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(cfg)],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"bench/training.py --one {json.dumps(cfg)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_rows(sock: str, quick: bool, trials: int, log=print) -> dict:
    """Every loader in every mode, @trials rounds: {mode: {loader: {figure: [median, min, max]}}}
    for samples_per_s, cpu_per_1000 and peak_rss_mib. A run that fails is logged and
    left out (a row with no run has no figures)."""
    runs: dict = {mode: {name: [] for name, _ in LOADERS} for mode, _ in MODES}
    for t in range(trials):
        for mode, data_only in MODES:
            for name, cfg in LOADERS:
                cfg = dict(cfg, data_only=data_only, steps=steps(data_only, quick), socket=sock)
                try:
                    r = measure_in_process(cfg)
                except (RuntimeError, subprocess.SubprocessError, ValueError) as e:
                    log(f"training, {mode}, {name}: {e}")
                    continue
                runs[mode][name].append(r)
                log(f"training, {mode}, round {t + 1}/{trials}: {name}: {r['samples_per_s']:.0f} samples/s, "
                    f"{r['cpu_per_1000']:.3f} CPU s per 1,000 samples, peak RSS {r['peak_rss_mib']:.0f} MiB")
    out: dict = {}
    for mode, rows in runs.items():
        for name, rs in rows.items():
            if not rs:
                continue
            fig = {}
            for key in ("samples_per_s", "cpu_per_1000", "peak_rss_mib"):
                v = sorted(r[key] for r in rs)
                fig[key] = [statistics.median(v), v[0], v[-1]]
            out.setdefault(mode, {})[name] = fig
    return out


def torch_reference(rows: dict) -> str | None:
    """torch's faster sharing strategy in the data-bound runs: the row every verdict compares
    with (by samples/s; its CPU per sample is the CPU reference)."""
    data = rows.get("data-only", {})
    torch_rows = [n for n in data if n.startswith("torch DataLoader")]
    return max(torch_rows, key=lambda n: data[n]["samples_per_s"][0]) if torch_rows else None


def config_text() -> str:
    return (f"batches of {BATCH} images of 3x{IMAGE}x{IMAGE} float32 ({BATCH * 3 * IMAGE * IMAGE * 4 >> 20} MiB), "
            f"{WORKERS} workers, shuffled, the loader's defaults otherwise")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket")
    ap.add_argument("--daemon", default=str(ROOT / "build" / "shmbrokerd"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--one", help=argparse.SUPPRESS)   # measure(JSON) here; print its figures as JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return 0
    daemon, sock = None, args.socket
    if not sock:
        sock = os.path.join(tempfile.mkdtemp(prefix="shmbroker-bench-"), "s.sock")
        daemon = subprocess.Popen([args.daemon, "--socket", sock, "--config", "/dev/null"], stderr=subprocess.DEVNULL)
        while not os.path.exists(sock):
            time.sleep(0.01)
    try:
        rows = run_rows(sock, args.quick, args.trials or (1 if args.quick else 3))
    finally:
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
    ref = torch_reference(rows)
    print(f"\n{config_text()}; reference: {ref}")
    for mode, by in rows.items():
        for name, f in by.items():
            base = rows[mode].get(ref) if ref else None
            rel = (f", {f['samples_per_s'][0] / base['samples_per_s'][0]:.2f}x the reference's samples/s, "
                   f"{f['cpu_per_1000'][0] / base['cpu_per_1000'][0]:.2f}x its CPU") if base else ""
            print(f"{mode:>14}  {name:36} {f['samples_per_s'][0]:8.0f} samples/s  "
                  f"{f['cpu_per_1000'][0]:.3f} CPU s/1000  {f['peak_rss_mib'][0]:5.0f} MiB{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""examples/train_torch.py and examples/train_ddp.py: a few steps of each, with torch's
DataLoader and shmbroker's; the two loaders give the same first batch for the same seed."""
from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys

import pytest

from sbtest import ROOT

pytest.importorskip("torch")

# Small images and batches: a few seconds a run, most of it importing torch.
COMMON = ["--steps", "2", "--warmup", "1", "--batch-size", "16", "--image-size", "32", "--workers", "2",
          "--seed", "7", "--print-checksum"]


def run(argv: list[str], daemon=None, timeout: float = 120, tmp=None) -> str:
    """Run @argv with the source tree's shmbroker (and @daemon's socket, and @tmp for its
    temporary files); its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    env.pop("SHMBROKER_SOCKET", None)
    if daemon is not None:
        env["SHMBROKER_SOCKET"] = daemon.path
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def first_batch(out: str) -> str:
    m = re.search(r"^first batch sha256: ([0-9a-f]{64})$", out, re.M)
    assert m, out
    return m.group(1)


def train_torch(*args: str, daemon=None) -> str:
    return run([sys.executable, str(ROOT / "examples" / "train_torch.py"), *COMMON, *args], daemon)


@functools.lru_cache(maxsize=None)
def torch_first_batch() -> str:
    """The first batch of torch's own DataLoader, training the model."""
    out = train_torch("--loader", "torch")
    assert "samples/s" in out and "loss" in out, out
    return first_batch(out)


def test_train_torch_shmbroker_getitem_gives_torchs_first_batch(daemon):
    out = train_torch("--loader", "shmbroker", daemon=daemon)
    assert "samples/s" in out and "loss" in out, out
    assert first_batch(out) == torch_first_batch(), out


def test_train_torch_shmbroker_write_sample_gives_torchs_first_batch(daemon):
    # Samples written in place by write_sample(), which draws the same random crops and
    # flips as __getitem__: the batch is still the one torch's loader makes.
    out = train_torch("--loader", "shmbroker", "--write-sample", "--data-only", daemon=daemon)
    assert "samples/s" in out and "loss" not in out, out
    assert first_batch(out) == torch_first_batch(), out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_ddp_two_ranks_one_daemon(daemon, tmp_path):
    # torchrun --standalone, on a port of its own: --standalone always takes 29400, which a
    # run beside this one may hold. Its log directory (a torchelastic_* that torch leaves
    # behind) goes in the test's own temporary directory, not in /tmp.
    out = run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "--redirects", "1", "--tee", "1",
               str(ROOT / "examples" / "train_ddp.py"), "--loader", "shmbroker", "--epochs", "2", "--steps", "3",
               "--batch-size", "8", "--image-size", "32"], daemon, timeout=180, tmp=tmp_path)
    assert f"every rank's loader uses the shmbrokerd of pid {daemon.proc.pid}" in out, out
    assert "epoch 1: 2 ranks saw disjoint samples" in out, out
    assert "OK: 2 ranks, 2 epochs" in out, out
    assert any(p.name.startswith("torchelastic_") for p in tmp_path.iterdir())    # where it went

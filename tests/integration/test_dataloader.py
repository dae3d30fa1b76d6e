"""shmbroker.DataLoader: epochs, order, collation, worker errors and deaths, cleanup."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import shmbroker
from sbtest import ROOT, segments, wait_for


class Squares:
    """Sample i: a 4x4 float32 image full of i, and the label i."""

    def __init__(self, n=50, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ZeroDivisionError(f"sample {i} is cursed")
        return np.full((4, 4), i, np.float32), i


def labels(loader):
    out = []
    for x, y in loader:
        assert x.dtype == np.float32 and x.shape[1:] == (4, 4)
        assert (x[:, 0, 0] == y).all()          # images and labels stay together
        assert not x.flags.writeable
        out.append(y.tolist())
    return out


class InPlace(Squares):
    """Squares that can also write a sample straight into the batch."""

    written = 0

    def write_sample(self, i, out):
        image, label = out
        assert image.shape == (4, 4) and image.flags.writeable and label.shape == ()
        if i == self.fail_at:
            raise ZeroDivisionError(f"sample {i} is cursed")
        image.fill(i)
        label[...] = i


def test_write_sample_fills_batches_in_place(daemon):
    with shmbroker.DataLoader(InPlace(23), batch_size=4, num_workers=2, shuffle=True, socket=daemon.path) as dl:
        for _ in range(2):
            got = labels(dl)
            assert sorted(sum(got, [])) == list(range(23))
    with shmbroker.DataLoader(InPlace(12, fail_at=9), batch_size=4, socket=daemon.path) as dl:
        with pytest.raises(ZeroDivisionError, match="sample 9 is cursed"):
            labels(dl)


def test_epochs_in_order(daemon):
    with shmbroker.DataLoader(Squares(50), batch_size=8, num_workers=3, socket=daemon.path) as dl:
        assert len(dl) == 7
        for _ in range(3):
            got = labels(dl)
            assert got == [list(range(i, min(i + 8, 50))) for i in range(0, 50, 8)]


def test_shuffle_draws_a_new_order_each_epoch_and_drop_last(daemon):
    with shmbroker.DataLoader(Squares(50), batch_size=8, num_workers=2, shuffle=True, drop_last=True,
                              socket=daemon.path, seed=3) as dl:
        e1, e2 = labels(dl), labels(dl)
    assert len(e1) == len(e2) == 6 and all(len(b) == 8 for b in e1 + e2)
    flat1, flat2 = sum(e1, []), sum(e2, [])
    assert len(set(flat1)) == 48 and flat1 != flat2


def test_custom_collate_dict(daemon):
    def collate(samples):
        return {"x": np.stack([s[0] for s in samples]).astype(np.float64), "n": np.array(len(samples))}
    with shmbroker.DataLoader(Squares(10), batch_size=4, num_workers=2, collate=collate, socket=daemon.path) as dl:
        got = list(dl)
    assert [int(b["n"]) for b in got] == [4, 4, 2]
    assert got[-1]["x"].dtype == np.float64 and got[-1]["x"].shape == (2, 4, 4)


def test_breaking_out_of_an_epoch_restarts_the_next_at_its_first_batch(daemon):
    with shmbroker.DataLoader(Squares(40), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        for i, (x, y) in enumerate(dl):
            if i == 2:
                break
        assert labels(dl)[0] == [0, 1, 2, 3]


def test_worker_error_is_raised_in_the_trainer_with_its_traceback(daemon):
    with shmbroker.DataLoader(Squares(50, fail_at=13), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        seen = []
        with pytest.raises(ZeroDivisionError) as e:            # its own type, as torch's loader
            for x, y in dl:
                seen.append(y.tolist())
    msg = str(e.value)
    assert msg.startswith("Caught ZeroDivisionError in worker")
    assert "ZeroDivisionError: sample 13 is cursed" in msg and "Traceback" in msg and "__getitem__" in msg
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]   # every batch before it, in order


def test_killed_worker_is_reported(daemon):
    class Slow(Squares):
        def __getitem__(self, i):
            if i == 20:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__getitem__(i)
    with shmbroker.DataLoader(Slow(60), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        with pytest.raises(shmbroker.WorkerError, match="died"):
            labels(dl)


def test_close_leaves_no_worker_and_no_segment(daemon):
    before = segments()
    dl = shmbroker.DataLoader(Squares(50), batch_size=5, num_workers=2, socket=daemon.path)
    it = iter(dl)
    next(it)
    pids = [p.pid for p in dl._workers]
    assert len(segments() - before) == 1
    del it
    dl.close()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    wait_for(lambda: segments() == before, what="the loader's segment to go")


TRAINER = """
import sys, time, numpy as np, shmbroker
class D:
    def __len__(self): return 10**6
    def __getitem__(self, i): return np.zeros(1000, np.uint8)
dl = shmbroker.DataLoader(D(), batch_size=16, num_workers=2, socket=sys.argv[1])
it = iter(dl)
next(it)
print(" ".join(str(p.pid) for p in dl._workers), flush=True)
time.sleep(60)
"""


def test_killed_trainer_takes_its_workers_and_segment_with_it(daemon):
    before = segments()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    p = subprocess.Popen([sys.executable, "-c", TRAINER, daemon.path], stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2
    p.send_signal(signal.SIGKILL)
    p.wait()
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), what="the workers to die")
    wait_for(lambda: segments() == before, what="the segment to go")
    assert shmbroker.connect("admin", daemon.path).status()["pools"] == []


class Raising(Squares):
    """Raises @exc for sample 5."""

    def __init__(self, n, exc):
        super().__init__(n)
        self.exc = exc

    def __getitem__(self, i):
        if i == 5:
            raise self.exc
        return super().__getitem__(i)


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)


def test_worker_exceptions_keep_their_type(daemon):
    """KeyError keeps its type (and a readable message); a type that cannot be made from one
    message comes as WorkerError, with the traceback all the same."""
    with shmbroker.DataLoader(Raising(8, KeyError("no such key")), batch_size=4, num_workers=1,
                              socket=daemon.path) as dl:
        with pytest.raises(KeyError) as e:
            labels(dl)
        text = str(e.value)                                # KeyError shows repr(): here the text itself
        assert text.startswith("Caught KeyError in worker 0") and "\nTraceback" in text and "\\n" not in text
    with shmbroker.DataLoader(Raising(8, NeedsTwo(1, 2)), batch_size=4, num_workers=1, socket=daemon.path) as dl:
        with pytest.raises(shmbroker.WorkerError, match="NeedsTwo"):
            labels(dl)


def test_worker_exception_type_is_torchs(daemon):
    """torch's own DataLoader is the oracle: the same dataset raises the same type in both."""
    torch_data = pytest.importorskip("torch.utils.data")
    with pytest.raises(Exception) as theirs:
        list(torch_data.DataLoader(Squares(12, fail_at=9), batch_size=4, num_workers=1))
    with shmbroker.DataLoader(Squares(12, fail_at=9), batch_size=4, num_workers=1, socket=daemon.path) as dl:
        with pytest.raises(Exception) as ours:
            labels(dl)
    assert type(ours.value) is type(theirs.value) is ZeroDivisionError
    for e in (ours.value, theirs.value):
        assert str(e).startswith("Caught ZeroDivisionError in ") and "sample 9 is cursed" in str(e)


class Noisy:
    """Each sample draws from python's, numpy's and (when imported) torch's generators, as
    random crops and flips do."""

    def __len__(self):
        return 24

    def __getitem__(self, i):
        import random
        import sys
        torch = sys.modules.get("torch")
        t = float(torch.rand(()).item()) if torch is not None else 0.0
        return np.array([random.random(), np.random.random(), t]), i


def test_workers_draw_different_random_numbers(daemon):
    with shmbroker.DataLoader(Noisy(), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        first, second = [np.concatenate([np.array(x) for x, _ in dl]) for _ in range(2)]   # copied out
    for col in range(2):                       # python's and numpy's: every sample its own draw
        assert len(set(first[:, col])) == 24
    assert not np.array_equal(first, second)   # and a new epoch, new numbers


def torch_and_ours(daemon, dataset, seed: int, **kw) -> tuple[list, list]:
    """The batches (first arrays, copied) of torch's own DataLoader and of ours, each run
    after torch.manual_seed(@seed): the oracle and what is checked against it."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader as TorchLoader

    torch.manual_seed(seed)
    theirs = [np.asarray(x) for x, _ in TorchLoader(dataset, **kw)]
    torch.manual_seed(seed)
    with shmbroker.DataLoader(dataset, socket=daemon.path, **kw) as dl:
        ours = [np.array(x) for x, _ in dl]
    assert len(ours) == len(theirs)
    return theirs, ours


def test_workers_draw_what_torchs_workers_draw(daemon):
    """torch's own DataLoader is the oracle: with the same global seed, every sample's draws
    from python, numpy and torch are the ones torch's workers make."""
    theirs, ours = torch_and_ours(daemon, Noisy(), 7, batch_size=4, num_workers=2)
    assert len(ours) == 6
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


class WhoAmI:
    """Each sample says which worker made it, asking as torch code asks."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        import sys
        torch = sys.modules.get("torch")
        info = torch.utils.data.get_worker_info() if torch is not None else shmbroker.get_worker_info()
        if info is None:                      # the main process, as torch's loader documents
            return np.array([-1, 0, 0]), i
        return np.array([info.id, info.num_workers, info.seed]), i


def test_get_worker_info_answers_in_workers_only(daemon):
    assert shmbroker.get_worker_info() is None
    with shmbroker.DataLoader(WhoAmI(), batch_size=2, num_workers=3, socket=daemon.path) as dl:
        got = [np.array(x) for x, _ in dl]
    assert [int(b[0, 0]) for b in got] == [b % 3 for b in range(8)]     # batch b made by worker b % 3
    assert all(int(b[0, 1]) == 3 for b in got)
    seeds = {int(b[0, 0]): int(b[0, 2]) for b in got}
    assert seeds[1] == seeds[0] + 1 and seeds[2] == seeds[0] + 2         # base seed + worker id


def test_get_worker_info_is_torchs(daemon):
    """torch's loader as the oracle: the same worker ids and seeds for the same global seed."""
    theirs, ours = torch_and_ours(daemon, WhoAmI(), 3, batch_size=2, num_workers=3)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)

"""shmbroker.DataLoader against torch's own DataLoader: the same batches for the same
arguments, batches that stay valid while held, workers run as torch runs them, faults
reported as torch reports them, and nothing left behind."""
from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import shmbroker
from sbtest import ROOT, segments, wait_for

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader as TorchLoader  # noqa: E402
from torch.utils.data import IterableDataset  # noqa: E402


def same(a, b, path="batch"):
    """Assert that @a (ours) is what @b (torch's) is: types, dtypes, shapes, values."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} where torch gives {type(b).__name__}"
    if isinstance(b, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        assert torch.equal(a, b), f"{path}: values differ"
    elif isinstance(b, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), path
    elif isinstance(b, dict):
        assert list(a) == list(b), path
        for k in b:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def both(daemon, dataset, seed=0, epochs=1, args=None, ours_kw=None, **kw):
    """Every batch of @epochs epochs of torch's loader and of ours, each after
    torch.manual_seed(@seed); ours are kept as handed out (views of shared memory).
    @args() makes more arguments, anew for each loader (a generator, a sampler)."""
    args = args or dict
    torch.manual_seed(seed)
    tl = TorchLoader(dataset, **kw, **args())
    theirs = [list(tl) for _ in range(epochs)]
    torch.manual_seed(seed)
    with shmbroker.DataLoader(dataset, socket=daemon.path, **kw, **args(), **(ours_kw or {})) as dl:
        assert isinstance(dl, TorchLoader)
        ours = [list(dl) for _ in range(epochs)]
        if not isinstance(dataset, IterableDataset):
            assert len(dl) == len(tl)
    return ours, theirs


# -- datasets (module level: the spawn context pickles them by name) ------------------------

class Squares(torch.utils.data.Dataset):
    """Sample i: a 4x4 float32 image full of i, its label, its name, and a dict."""

    def __init__(self, n=50, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ZeroDivisionError(f"sample {i} is cursed")
        return np.full((4, 4), i, np.float32), i, f"name-{i}", {"w": float(i) / 2, "b": i % 2 == 0}


Pair = collections.namedtuple("Pair", "x y")


class Mixed(torch.utils.data.Dataset):
    """Tensors, numpy scalars, namedtuples, nested lists, bytes-free strings of any length."""

    def __len__(self):
        return 21

    def __getitem__(self, i):
        return {"t": torch.arange(i, i + 3, dtype=torch.int16), "s": np.float32(i) * 1.5,
                "p": Pair(np.arange(2, dtype=np.uint8) + i, [i, -i]), "text": "x" * (i * 37)}


class Ragged(torch.utils.data.Dataset):
    """Sample i: i + 1 int64 numbers; batches of them are padded by pad(), later ones longer."""

    def __len__(self):
        return 300

    def __getitem__(self, i):
        return np.arange(i + 1, dtype=np.int64)


def pad(samples):
    n = max(len(s) for s in samples)
    out = torch.zeros(len(samples), n * 64, dtype=torch.int64)
    for j, s in enumerate(samples):
        out[j, :len(s)] = torch.from_numpy(s)
    return out, torch.tensor([len(s) for s in samples])


class Noisy(torch.utils.data.Dataset):
    """Each sample draws from python's, numpy's and torch's generators, as augmentations do."""

    def __len__(self):
        return 24

    def __getitem__(self, i):
        return torch.tensor([random.random(), np.random.random(), torch.rand(()).item()]), i


class WhoAmI(torch.utils.data.Dataset):
    """Each sample says which worker made it (torch's get_worker_info()) and in which process."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        info = torch.utils.data.get_worker_info()
        return torch.tensor([info.id, info.num_workers, info.seed, os.getpid()]), i


class Shards(IterableDataset):
    """An iterable dataset sharded across workers as torch's documentation shows."""

    def __init__(self, start=0, end=37):
        self.start, self.end = start, end

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is None:
            return iter(range(self.start, self.end))
        per = -(-(self.end - self.start) // info.num_workers)
        lo = self.start + info.id * per
        return iter(range(lo, min(lo + per, self.end)))


class Recorder(torch.utils.data.Dataset):
    """Records in which process __getitem__ ran, through a file opened lazily (the idiom)."""

    def __init__(self, path):
        self.path, self.file = path, None

    def __len__(self):
        return 40

    def __getitem__(self, i):
        if self.file is None:
            self.file = open(self.path, "a")
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()
        return np.full(8, i, np.int32)


class Images(torch.utils.data.Dataset):
    """Sample i: one array, so that a batch is one tensor (which a worker sends with no
    pickle: _slotpack.pack())."""

    def __len__(self):
        return 30

    def __getitem__(self, i):
        return np.arange(6, dtype=np.float64).reshape(2, 3) * i + 0.5


class Arrays(torch.utils.data.Dataset):
    """Samples of numpy arrays in every dtype torch takes, 0-d ones among them, inside a
    tuple and a dict: each field stacked as torch stacks it."""

    DTYPES = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
              np.complex64, np.complex128)

    def __len__(self):
        return 12

    def __getitem__(self, i):
        fields = {np.dtype(t).name: (np.arange(6) * (i + 1) % 7).astype(t).reshape(2, 3) for t in self.DTYPES}
        return fields, (np.array(i * 0.5), np.arange(3, dtype=np.int16)[::-1] + i)


class Unstackable(torch.utils.data.Dataset):
    """Arrays that torch's own collation refuses (or promotes), each in a batch of its own."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        batch, k = divmod(i, 3)
        if batch == 0:
            return np.zeros(k + 1, np.float32)                      # shapes differ
        if batch == 1:
            return np.zeros(2, ">f4")                               # not the native byte order
        if batch == 2:
            return np.zeros(2, np.uint16)                           # a dtype torch lacks
        return np.zeros(2, np.float32 if k else np.float64)         # dtypes differ


class InPlace(torch.utils.data.Dataset):
    """Squares that can also write a sample straight into the batch."""

    def __len__(self):
        return 23

    def __getitem__(self, i):
        return np.full((4, 4), i, np.float32), i

    def write_sample(self, i, out):
        image, label = out
        assert image.shape == (4, 4) and image.flags.writeable and label.shape == ()
        image.fill(i)
        label[...] = i


class Sleepy(torch.utils.data.Dataset):
    def __init__(self, n=100, hang_at=None, kill_at=None, delay=0.0):
        self.n, self.hang_at, self.kill_at, self.delay = n, hang_at, kill_at, delay

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if i == self.hang_at:
            time.sleep(3600)
        time.sleep(self.delay)
        return np.full(16, i, np.int64)


# -- the same batches as torch's loader ---------------------------------------------------------

def bucket_batches(n, size):
    """A batch_sampler: indices grouped by length bucket (as for sequences)."""
    order = sorted(range(n), key=lambda i: (i % 3, i))
    return [order[i:i + size] for i in range(0, n, size)]


ARGS = {
    "default": (Squares, dict(batch_size=4, num_workers=2)),
    "shuffle+generator+drop_last": (Squares, dict(batch_size=8, num_workers=2, shuffle=True, drop_last=True),
                                    lambda: dict(generator=torch.Generator().manual_seed(5))),
    "sampler": (Squares, dict(batch_size=5, num_workers=2), lambda: dict(
        sampler=torch.utils.data.WeightedRandomSampler([1.0] * 25 + [3.0] * 25, 60,
                                                       generator=torch.Generator().manual_seed(1)))),
    "batch_sampler": (Squares, dict(num_workers=3, batch_sampler=bucket_batches(50, 7))),
    "batch_size=None": (Squares, dict(batch_size=None, num_workers=2)),
    "nested types": (Mixed, dict(batch_size=4, num_workers=2, prefetch_factor=3)),
    "one array a sample": (Images, dict(batch_size=4, num_workers=2)),
    "one array a sample, batch_size=None": (Images, dict(batch_size=None, num_workers=2)),
    "arrays of every dtype, nested": (Arrays, dict(batch_size=5, num_workers=2)),
    "collate_fn": (Ragged, dict(batch_size=10, num_workers=2, collate_fn=pad)),
    "iterable": (Shards, dict(batch_size=4, num_workers=3)),
    "iterable drop_last": (Shards, dict(batch_size=4, num_workers=2, drop_last=True)),
    "num_workers=0": (Squares, dict(batch_size=4)),
    "persistent_workers": (Squares, dict(batch_size=6, num_workers=2, shuffle=True, persistent_workers=True)),
}


@pytest.mark.parametrize("case", ARGS)
def test_same_batches_as_torchs_loader(daemon, case):
    make, kw, *args = ARGS[case]
    ours, theirs = both(daemon, make(), epochs=2, args=args[0] if args else None, **kw)
    assert len(ours[0]) > 1
    same(ours, theirs)


def test_batch_tensors_are_views_of_shared_memory(daemon):
    with shmbroker.DataLoader(Squares(), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        x, *_ = next(iter(dl))
    # The tensor's memory is a SysV segment mapped in this process (a "SYSV" line in maps).
    addr = x.data_ptr()
    with open("/proc/self/maps") as maps:
        where = [line for line in maps if int(line.split("-")[0], 16) <= addr < int(line.split()[0].split("-")[1], 16)]
    assert where and "SYSV" in where[0]


def test_write_sample_gives_what_torch_gives_from_getitem(daemon):
    torch.manual_seed(0)
    theirs = list(TorchLoader(InPlace(), batch_size=4, num_workers=2, shuffle=True))
    torch.manual_seed(0)
    with shmbroker.DataLoader(InPlace(), batch_size=4, num_workers=2, shuffle=True, socket=daemon.path,
                              write_sample=True) as dl:
        ours = list(dl)
    same(ours, theirs)


# -- batch lifetime, memory, writing -----------------------------------------------------------

def test_held_batches_stay_valid(daemon):
    """list(loader) once gave 33 wrong batches of 50: every batch held stays what it was."""
    for held in (1, 4):
        ours, theirs = both(daemon, Squares(200), batch_size=4, num_workers=2, ours_kw=dict(batches_held=held))
        same(ours, theirs)
    # Views of a batch outlive the batch itself, across epochs.
    with shmbroker.DataLoader(Squares(40), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        kept = [x[1:3, 0] for x, *_ in dl]          # views only: every batch object itself is gone
        for _ in range(3):
            for _ in dl:
                pass
    assert [k[:, 0].tolist() for k in kept] == [[4 * b + 1, 4 * b + 2] for b in range(10)]


def test_memory_is_bounded_while_the_trainer_holds_everything(daemon):
    observer = shmbroker.connect("admin", daemon.path)
    with shmbroker.DataLoader(Squares(400), batch_size=2, num_workers=2, socket=daemon.path, batches_held=3) as dl:
        it = iter(dl)
        held = [next(it) for _ in range(150)]
        pools = observer.status()["pools"]
        assert len(pools) == 1 and pools[0]["slots"] == 2 * (2 + 1) + 3 + 2
        held += list(it)
    assert [int(b[1][0]) for b in held] == list(range(0, 400, 2))
    assert all((b[0][:, 0, 0] == b[1]).all() for b in held)


def test_the_trainer_may_modify_its_batch_in_place(daemon):
    with shmbroker.DataLoader(Squares(40), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        for b, (x, y, *_) in enumerate(dl):
            x = torch.as_tensor(x).float().sub_(1.0)       # .float() of float32 is the same memory
            x.mul_(2)
            assert (x[:, 0, 0] == (y - 1) * 2).all()
        # and the next epoch's batches are what they should be, not what was written
        for b, (x, y, *_) in enumerate(dl):
            assert (x[:, 0, 0] == y).all()


def test_slots_grow_for_later_bigger_batches(daemon):
    """A padding collate_fn whose later batches are larger than the first slots."""
    torch.manual_seed(0)
    theirs = list(TorchLoader(Ragged(), batch_size=10, num_workers=2, collate_fn=pad))
    with shmbroker.DataLoader(Ragged(), batch_size=10, num_workers=2, collate_fn=pad, socket=daemon.path,
                              slot_size=64 << 10) as dl:
        ours = list(dl)
        assert dl._slot_size > 64 << 10
        ours += list(dl)                     # the next epoch starts with the bigger slots
    same(ours, theirs + theirs)
    assert theirs[-1][0].numel() * 8 > 64 << 10


def test_getitem_never_runs_in_the_trainer(daemon, tmp_path):
    path = tmp_path / "pids"
    with shmbroker.DataLoader(Recorder(str(path)), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        got = [int(x[0, 0]) for x in dl]
    assert got == list(range(0, 40, 4))
    pids = set(path.read_text().split())
    assert str(os.getpid()) not in pids and len(pids) == 2


# -- workers as torch runs them ------------------------------------------------------------------

def test_workers_draw_what_torchs_workers_draw(daemon):
    ours, theirs = both(daemon, Noisy(), seed=7, epochs=2, batch_size=4, num_workers=2)
    same(ours, theirs)
    firsts = torch.cat([x for x, _ in ours[0]])
    assert len(set(firsts[:, 0].tolist())) == 24        # every sample its own draw


def test_get_worker_info_and_worker_init_fn_as_torchs(daemon):
    calls = "/tmp/shmbroker-init-fn-%d" % os.getpid()

    def init(worker_id):
        info = torch.utils.data.get_worker_info()
        assert info.id == worker_id
        with open(calls, "a") as f:
            f.write(f"{worker_id}\n")
    try:
        torch.manual_seed(3)
        theirs = [x[:, :3] for x, _ in TorchLoader(WhoAmI(), batch_size=2, num_workers=3, worker_init_fn=init)]
        torch.manual_seed(3)
        with shmbroker.DataLoader(WhoAmI(), batch_size=2, num_workers=3, worker_init_fn=init,
                                  socket=daemon.path) as dl:
            got = list(dl)
        same([x[:, :3] for x, _ in got], theirs)
        with open(calls) as f:
            assert sorted(f.read().split()) == ["0", "0", "1", "1", "2", "2"]
    finally:
        if os.path.exists(calls):
            os.unlink(calls)
    assert shmbroker.get_worker_info() is None and torch.utils.data.get_worker_info() is None


def test_spawn_context(daemon):
    ours, theirs = both(daemon, Squares(20), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    same(ours, theirs)


def test_persistent_workers_keep_their_processes(daemon):
    with shmbroker.DataLoader(WhoAmI(), batch_size=2, num_workers=2, persistent_workers=True,
                              socket=daemon.path) as dl:
        pids = [{int(p) for p in torch.cat([x[:, 3] for x, _ in dl]).tolist()} for _ in range(3)]
    assert pids[0] == pids[1] == pids[2] and len(pids[0]) == 2


# -- faults ----------------------------------------------------------------------------------

def test_worker_exception_is_reraised_as_torchs_and_the_loader_goes_on(daemon):
    def run(loader):
        seen, errors = [], []
        it = iter(loader)
        while True:
            try:
                seen.append(next(it)[1].tolist())
            except StopIteration:
                return seen, errors
            except Exception as e:
                errors.append(e)
    theirs = run(TorchLoader(Squares(20, fail_at=9), batch_size=4, num_workers=2))
    with shmbroker.DataLoader(Squares(20, fail_at=9), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        ours = run(dl)
        again = run(dl)                                     # and the next epoch as well
    assert again[0] == ours[0] and [str(e) for e in again[1]] == [str(e) for e in ours[1]]
    assert ours[0] == theirs[0] == [[0, 1, 2, 3], [4, 5, 6, 7], [12, 13, 14, 15], [16, 17, 18, 19]]
    (e,), (t,) = ours[1], theirs[1]
    assert type(e) is type(t) is ZeroDivisionError
    assert str(e).split("\n")[0] == str(t).split("\n")[0] == "Caught ZeroDivisionError in DataLoader worker process 0."
    assert "sample 9 is cursed" in str(e) and "__getitem__" in str(e)


def test_arrays_torch_cannot_stack_fail_or_promote_as_in_torch(daemon):
    """The loader's own stacking of numpy arrays (_worker._Out.stack_arrays) leaves to torch
    whatever it does not take: the same exceptions, or the same promoted batch."""
    def run(loader):
        out, it = [], iter(loader)
        while True:
            try:
                out.append(next(it))
            except StopIteration:
                return out
            except Exception as e:
                out.append((type(e), str(e).split("\n")[-2] if "\n" in str(e) else str(e)))
    theirs = run(TorchLoader(Unstackable(), batch_size=3, num_workers=2))
    with shmbroker.DataLoader(Unstackable(), batch_size=3, num_workers=2, socket=daemon.path) as dl:
        ours = run(dl)
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs):
        if isinstance(b, tuple):
            assert a[0] is b[0] and a[1] == b[1], (a, b)
        else:
            same(a, b)
    assert sum(isinstance(b, tuple) for b in theirs) >= 2       # torch refuses some of them


def test_key_error_keeps_type_and_readable_message(daemon):
    with shmbroker.DataLoader(KeyErrors(), batch_size=2, num_workers=1, socket=daemon.path) as dl:
        with pytest.raises(KeyError) as e:
            list(dl)
    assert str(e.value).startswith("Caught KeyError in DataLoader worker process 0.\nOriginal Traceback")


class KeyErrors(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise KeyError("no such key")


def test_a_killed_worker_is_reported_and_the_next_epoch_has_fresh_workers(daemon):
    for persistent in (False, True):
        dl = shmbroker.DataLoader(Sleepy(64, kill_at=21), batch_size=4, num_workers=2, socket=daemon.path,
                                  persistent_workers=persistent)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited unexpectedly "
                                               r"\(pid \d+ killed by signal SIGKILL\)"):
            list(dl)
        assert time.monotonic() - start < 3
        dl.dataset.kill_at = None
        assert [int(x[0, 0]) for x in dl] == list(range(0, 64, 4))
        dl.close()


def test_timeout_as_torchs(daemon):
    with shmbroker.DataLoader(Sleepy(20, hang_at=9), batch_size=4, num_workers=2, timeout=1.5,
                              socket=daemon.path) as dl:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"DataLoader timed out after 1.5 seconds"):
            list(dl)
        assert 1.4 < time.monotonic() - start < 4


def test_leaving_epochs_early_costs_little_and_the_next_starts_at_its_first_batch(daemon):
    for persistent in (False, True):
        with shmbroker.DataLoader(Sleepy(400, delay=0.01), batch_size=4, num_workers=2, socket=daemon.path,
                                  persistent_workers=persistent) as dl:
            start = time.monotonic()
            for _ in range(5):
                for i, x in enumerate(dl):
                    assert int(x[0, 0]) == 4 * i
                    if i == 1:
                        break
            # The whole epoch would take 100 batches x 4 samples x 10 ms / 2 workers = 2 s.
            assert time.monotonic() - start < 5 * 1.0


def test_several_live_iterators(daemon):
    with shmbroker.DataLoader(Squares(40), batch_size=4, num_workers=2, socket=daemon.path) as dl:
        pairs = [(int(a[1][0]), int(b[1][0])) for a, b in zip(dl, dl)]
    assert pairs == [(i, i) for i in range(0, 40, 4)]


# -- daemon, quotas, cleanup ------------------------------------------------------------------------

def test_a_pool_exists_only_while_an_epoch_runs(daemon):
    observer = shmbroker.connect("admin", daemon.path)
    loaders = [shmbroker.DataLoader(Squares(8), batch_size=4, num_workers=1, socket=daemon.path) for _ in range(20)]
    for dl in loaders:
        assert len(list(dl)) == 2
        wait_for(lambda: observer.status()["pools"] == [], what="the epoch's pool to go")


TRAINER = """
import sys, time, numpy as np, shmbroker
class D:
    def __len__(self): return 10**6
    def __getitem__(self, i): return np.zeros(1000, np.uint8)
dl = shmbroker.DataLoader(D(), batch_size=16, num_workers=2, socket=sys.argv[1] or None)
it = iter(dl)
next(it)
print(" ".join(str(p.pid) for p in it._workers), flush=True)
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


def test_without_a_daemon_the_loader_starts_its_own(tmp_path):
    """No socket given, none in the environment, nothing at the system socket: a private
    daemon serves the loaders and goes with the process."""
    before = segments()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"), XDG_RUNTIME_DIR=str(tmp_path),
               SHMBROKERD=str(ROOT / "build" / "shmbrokerd"))
    env.pop("SHMBROKER_SOCKET", None)
    code = """
import numpy as np, shmbroker, shmbroker._private as p, shmbroker._lib as lib
lib.DEFAULT_SOCKET = "/nonexistent/shmbroker.sock"
class D:
    def __len__(self): return 12
    def __getitem__(self, i): return np.full(3, i)
print([int(x[0, 0]) for x in shmbroker.DataLoader(D(), batch_size=4, num_workers=2)], p.private_daemon_pid())
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got, pid = out.stdout.rsplit(" ", 1)
    assert got == "[0, 4, 8]" and int(pid) > 0
    wait_for(lambda: not os.path.exists(f"/proc/{int(pid)}"), what="the private daemon to stop")
    assert segments() == before


NO_TORCH = """
import sys
sys.modules["torch"] = None                     # import torch fails, as where it is not installed
import numpy as np, shmbroker
class D:
    def __len__(self): return 10
    def __getitem__(self, i): return np.full((2,), i, np.float32), i
    def write_sample(self, i, out): out[0][...] = i; out[1][...] = i
class R:
    def __len__(self): return 10
    def __getitem__(self, i): return np.full((2,), i, np.float32), i, "s%d" % i
class A:
    def __len__(self): return 10
    def __getitem__(self, i): return np.full((2,), i, np.float32)
dl = shmbroker.DataLoader(A(), batch_size=4, num_workers=2, socket=sys.argv[1])
got = list(dl)
assert [type(x) for x in got] == [np.ndarray] * 3 and got[-1].tolist() == [[8, 8], [9, 9]], got
for d in (D(), R()):
    for w in (0, 2):
        dl = shmbroker.DataLoader(d, batch_size=4, num_workers=w, socket=sys.argv[1], write_sample=isinstance(d, D))
        got = list(dl)
        x, y = got[-1][0], got[-1][1]
        assert type(x) is np.ndarray and x.dtype == np.float32 and x.shape == (2, 2), (type(x), x)
        assert y.tolist() == [8, 9] and (x[:, 0] == y).all()
        if isinstance(d, R):
            assert got[0][2] == ["s0", "s1", "s2", "s3"]
print("ok")
"""


def test_without_torch_batches_are_numpy_arrays(daemon):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"))
    out = subprocess.run([sys.executable, "-c", NO_TORCH, daemon.path], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_persistent_worker_killed_between_epochs(daemon):
    """Reported when the next epoch starts; the one after has fresh workers."""
    with shmbroker.DataLoader(Sleepy(16), batch_size=4, num_workers=2, persistent_workers=True,
                              socket=daemon.path) as dl:
        assert len(list(dl)) == 4
        victim = dl._iterator._workers[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        with pytest.raises(RuntimeError, match=rf"pid {victim.pid} killed by signal SIGKILL"):
            list(dl)
        assert [int(x[0, 0]) for x in dl] == [0, 4, 8, 12]
        assert victim.pid not in [p.pid for p in dl._iterator._workers]


class Chunked(IterableDataset):
    """Collates a chunk of samples once, in the worker, and yields its rows again and again:
    default_collate's output, kept by the dataset across batches."""

    def __iter__(self):
        chunk = torch.utils.data.default_collate([torch.full((64,), float(i)) for i in range(4)])
        for j in range(300):
            yield chunk[j % 4]


def test_default_collate_in_a_dataset_keeps_its_own_memory(daemon):
    theirs = list(TorchLoader(Chunked(), batch_size=None, num_workers=1))
    with shmbroker.DataLoader(Chunked(), batch_size=None, num_workers=1, socket=daemon.path) as dl:
        for i, x in enumerate(dl):          # each batch dropped at once: slots go round
            same(x, theirs[i], f"batch {i}")
        assert i == 299


class NotInPlace(Squares):
    def write_sample(self, *args):
        """A method of the same name that means something else: no loader should call it."""
        raise AssertionError("write_sample called without write_sample=True")


def test_write_sample_is_used_only_when_asked(daemon):
    ours, theirs = both(daemon, NotInPlace(12), batch_size=4, num_workers=2)
    same(ours, theirs)
    with pytest.raises(ValueError, match="write_sample=True needs a map-style dataset"):
        shmbroker.DataLoader(InPlace(), batch_size=4, num_workers=2, collate_fn=pad, write_sample=True)


def test_forkserver_context(daemon):
    ours, theirs = both(daemon, Squares(20), batch_size=4, num_workers=2, multiprocessing_context="forkserver")
    same(ours, theirs)


def test_timeout_raises_on_time(daemon):
    with shmbroker.DataLoader(Sleepy(20, hang_at=1), batch_size=4, num_workers=1, timeout=1.0,
                              socket=daemon.path) as dl:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="timed out after 1.0 seconds"):
            list(dl)
        assert time.monotonic() - start < 1.6


@pytest.mark.parametrize("shape, dtype", [((4096,), np.uint8), ((2, 3), np.float64), ((3, 2, 5), np.int16),
                                          ((), np.float32), ((0, 4), np.int32), ((4, 1, 3), np.int64)])
def test_a_batch_stacked_in_the_slot_is_referenced_as_torch_lays_it_out(shape, dtype):
    """A worker knows where the tensors it stacks lie (SlotArena.remember()) and sends that
    reference without asking torch: it must be the one torch's own storage gives."""
    from shmbroker import _slotpack
    view = memoryview(bytearray(1 << 16))
    for _ in range(2):                                  # made, then remembered
        arena = _slotpack.SlotArena(view)
        arena.alloc(8)
        n, size = 4, int(np.prod(shape))
        off = arena.alloc(n * size * np.dtype(dtype).itemsize)
        t = torch.from_numpy(np.frombuffer(arena.view, dtype, n * size, off).reshape((n,) + shape))
        arena.remember(t, off, (n,) + shape)
        known = _slotpack.pack(t, arena)
        arena.known.clear()
        asked = _slotpack.pack(t, arena)
        assert known == asked
        again = _slotpack.unpack(view, known)
        assert again.dtype == t.dtype and again.shape == t.shape and again.stride() == t.stride()
        assert again.data_ptr() == t.data_ptr()

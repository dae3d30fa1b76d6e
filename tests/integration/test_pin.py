"""pin_memory (shmbroker._pin) on a machine without CUDA: the decision against torch's
loader, the registrar against a fake CUDA runtime, batches pinned as torch pins them, slot
releases held until the GPU is done, and the unregistering hook run before the detach.
The real CUDA path is checked on a GPU machine by bench/gpu_pin.py (docs/dataloader.md)."""
from __future__ import annotations

import collections
import gc
import inspect
import os
import warnings

import numpy as np
import pytest

import shmbroker
from shmbroker import _pin
from shmbroker._pin import (DEVICE_WITHOUT_PIN_WARNING, HOST_REGISTER_PORTABLE, HOST_REGISTER_READ_ONLY, PinError,
                            Pinner, PinWarning, Registrar, ReleaseFence, pin_batch, plan)

RO = HOST_REGISTER_PORTABLE | HOST_REGISTER_READ_ONLY
RW = HOST_REGISTER_PORTABLE
DEVICES = ["", "cuda", "cuda:1", "mps", "xpu:0"]


def cuda_here() -> bool:
    return _pin.cuda_available()


class FakeCudart:
    """cudaHostRegister and friends as torch.cuda.cudart() gives them, recording each call.
    ``refuse(addr, size, flags)`` returns the error code of a refused registration (0: ok)."""

    ERRORS = {1: "invalid argument", 712: "part or all of the requested memory range is already mapped",
              801: "operation not supported"}

    def __init__(self, refuse=None, unregister_error=0):
        self.calls: list = []
        self.registered: dict = {}
        self.refuse = refuse or (lambda addr, size, flags: 0)
        self.unregister_error = unregister_error
        self.last_error = 0
        self.on_unregister = None

    def cudaHostRegister(self, addr, size, flags):
        self.calls.append(("register", addr, size, flags))
        code = self.refuse(addr, size, flags)
        if code:
            self.last_error = code
            return code
        self.registered[addr] = (size, flags)
        return 0

    def cudaHostUnregister(self, addr):
        self.calls.append(("unregister", addr))
        if self.on_unregister is not None:
            self.on_unregister(addr)
        if self.unregister_error:
            self.last_error = self.unregister_error
            return self.unregister_error
        if self.registered.pop(addr, None) is None:
            self.last_error = 1
            return 1
        return 0

    def cudaGetErrorString(self, code):
        return self.ERRORS.get(code, "unknown error")

    def cudaGetLastError(self):
        code, self.last_error = self.last_error, 0
        return code


def registers(fake: FakeCudart) -> list:
    return [c for c in fake.calls if c[0] == "register"]


def mapped(addr: int) -> bool:
    with open("/proc/self/maps") as maps:
        return any(int(line[:line.index("-")], 16) == addr for line in maps)


# -- the decision ---------------------------------------------------------------------------
@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pin", [False, True])
def test_plan_matrix(pin, device, cuda):
    p = plan(pin, device, cuda)
    # torch: with no device, pin when CUDA is available; with one, exactly when asked.
    assert p.pin == (pin and (bool(device) or cuda))
    assert p.device == (device or None)
    assert p.warning == (DEVICE_WITHOUT_PIN_WARNING if device and not pin else None)
    # Registered only for CUDA devices with CUDA there; anything else is torch's copy.
    assert p.register == (p.pin and cuda and device in ("", "cuda", "cuda:1"))
    assert p.why


def test_plan_rows_spelled_out():
    assert plan(True, "", False) == _pin.Plan(False, None, False, None, plan(True, "", False).why)
    assert plan(True, "", True).register and plan(True, "", True).device is None
    assert plan(True, "cuda:0", True).device == "cuda:0"
    mps = plan(True, "mps", True)
    assert mps.pin and not mps.register and mps.device == "mps" and "copies" in mps.why
    no_cuda = plan(True, "cuda", False)       # torch pins, and fails as torch fails
    assert no_cuda.pin and not no_cuda.register
    assert not plan(True, "cudax", True).register and not plan(True, "cuda:", True).register
    with pytest.raises(TypeError):
        plan(True, None, True)


def test_plan_warns_as_told():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plan(False, "cuda", True).warn()
        plan(True, "cuda", True).warn()
        plan(True, "", False).warn()
    assert [str(x.message) for x in w] == [DEVICE_WITHOUT_PIN_WARNING]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pin", [False, True])
def test_plan_is_what_torch_loader_decides(pin, device):
    """torch's own iterator, made on this machine, is the oracle: whether it pins, with
    which device, and the warning it gives."""
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2, pin_memory=pin, pin_memory_device=device)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        it = iter(loader)
    p = plan(pin, device, torch.cuda.is_available())
    assert (it._pin_memory, it._pin_memory_device) == (p.pin, p.device)
    assert [str(x.message) for x in w] == ([p.warning] if p.warning else [])


@pytest.mark.skipif(cuda_here(), reason="CUDA is available here")
def test_pin_memory_without_cuda_is_accepted_and_ignored():
    """torch's loader with pin_memory=True gives the batches it gives without; so does a
    Pinner: the very same objects, releases at once, nothing registered."""
    torch = pytest.importorskip("torch")
    pinner = Pinner.for_loader(True)
    assert not pinner.plan.pin and pinner.registrar is None and pinner.plan.warning is None
    data = [(torch.full((3, 2), float(i)), i) for i in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = list(torch.utils.data.DataLoader(data, batch_size=4))
        pinned = list(torch.utils.data.DataLoader(data, batch_size=4, pin_memory=True))
        for a, b in zip(plain, pinned):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
            assert pinner(b) is b
    released = []
    pinner.release(lambda: released.append(1))
    assert released == [1] and pinner.poll() == 0


@pytest.mark.skipif(cuda_here(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_device_without_cuda_fails_as_in_torch(device):
    """pin_memory_device named, nothing to pin with: torch's loader fails at the first
    batch; a Pinner fails the same way (it is torch's own pin_memory() that fails)."""
    torch = pytest.importorskip("torch")
    data = [torch.zeros(2)] * 4
    with pytest.raises(Exception) as theirs:
        next(iter(torch.utils.data.DataLoader(data, batch_size=2, pin_memory=True, pin_memory_device=device)))
    pinner = Pinner.for_loader(True, device)
    assert pinner.plan.pin and not pinner.plan.register and pinner.registrar is None
    with pytest.raises(type(theirs.value)):
        pinner([torch.zeros(2, 2)])


@pytest.mark.skipif(cuda_here(), reason="CUDA is available here")
def test_dataloader_takes_pin_memory_without_cuda(daemon, monkeypatch):
    """shmbroker.DataLoader(pin_memory=True) gives torch's batches, unpinned, without CUDA."""
    torch = pytest.importorskip("torch")
    if "pin_memory" not in inspect.signature(shmbroker.DataLoader).parameters:
        pytest.skip("shmbroker.DataLoader does not take pin_memory yet")
    monkeypatch.setenv("SHMBROKER_SOCKET", daemon.path)
    data = [(np.full((4, 4), i, np.float32), i) for i in range(22)]
    expect = list(torch.utils.data.DataLoader(data, batch_size=4, pin_memory=True))
    loader = shmbroker.DataLoader(data, batch_size=4, num_workers=2, pin_memory=True)
    try:
        got = [(x.clone(), y.clone()) for x, y in loader]
    finally:
        getattr(loader, "close", lambda: None)()
    assert len(got) == len(expect)
    for (x, y), (ex, ey) in zip(got, expect):
        assert torch.equal(x, ex) and torch.equal(y, ey) and not x.is_pinned()


# -- the registrar ----------------------------------------------------------------------------
def test_registrar_registers_each_segment_once_with_its_flags():
    fake = FakeCudart()
    r = Registrar(cudart=fake)
    hook_ro = r.register(0x10000, 1 << 20, read_only=True)
    hook_rw = r.register(0x400000, 8192, read_only=False)
    assert r.register(0x10000, 1 << 20, read_only=True) is hook_ro     # once per (addr, size)
    assert registers(fake) == [("register", 0x10000, 1 << 20, RO), ("register", 0x400000, 8192, RW)]
    assert r.is_registered(0x10000) and r.is_registered(0x400000) and not r.is_registered(0x20000)
    assert r.covers(0x10000, 1 << 20) and r.covers(0x20000, 64) and r.covers(0x401000, 4096)
    assert not r.covers(0x10000, (1 << 20) + 1) and not r.covers(0x8000, 0x9000) and not r.covers(0x402000, 1)
    assert not r.covers(0x20000, 0)
    hook_ro()
    hook_ro()                                   # a second call does nothing
    assert fake.calls[2:] == [("unregister", 0x10000)]
    assert not r.is_registered(0x10000) and not r.covers(0x20000, 64)
    r.unregister(0x400000)
    hook_rw()                                   # after unregister(): nothing
    r.unregister(0x400000)
    assert fake.calls[2:] == [("unregister", 0x10000), ("unregister", 0x400000)]
    assert fake.registered == {}


def test_a_stale_hook_leaves_a_new_registration_alone():
    fake = FakeCudart()
    r = Registrar(cudart=fake)
    old = r.register(0x10000, 4096, read_only=True)
    old()
    new = r.register(0x10000, 4096, read_only=True)     # other memory, at the same address
    old()
    assert r.is_registered(0x10000) and fake.calls[-1][0] == "register"
    new()
    assert not r.is_registered(0x10000)


def test_overlapping_registrations_are_refused():
    """Memory registered at an address must be unregistered before its segment goes: a
    new range over it means the hook was not called."""
    fake = FakeCudart()
    r = Registrar(cudart=fake)
    r.register(0x10000, 0x10000, read_only=True)
    for addr, size in [(0x10000, 0x20000), (0x8000, 0x9000), (0x1f000, 0x2000), (0x12000, 0x1000)]:
        with pytest.raises(ValueError, match="unregistered"):
            r.register(addr, size, read_only=True)
    r.register(0x20000, 0x1000, read_only=True)           # adjacent: fine
    r.register(0xf000, 0x1000, read_only=True)
    assert len(registers(fake)) == 3
    with pytest.raises(ValueError):
        r.register(0, 4096, read_only=True)


def test_refused_registrations_fall_back_with_one_warning():
    """A GPU that cannot register read-only memory: no error, one PinWarning that says
    why, the runtime's last error cleared, nothing registered, batches left to torch's copy."""
    fake = FakeCudart(refuse=lambda addr, size, flags: 801 if flags & HOST_REGISTER_READ_ONLY else 0)
    r = Registrar(cudart=fake)
    with pytest.warns(PinWarning, match="operation not supported.*read-only") as w:
        hook = r.register(0x10000, 4096, read_only=True)
        r.register(0x40000, 4096, read_only=True)
        r.register(0x10000, 4096, read_only=True)          # refused before: not asked again
    assert len(w) == 1 and len(r.failures) == 2
    assert fake.last_error == 0                            # cleared: torch's next check stays clean
    assert len(registers(fake)) == 2 and not r.is_registered(0x10000) and not r.covers(0x10000, 64)
    hook()                                                 # a no-op but for forgetting the refusal
    assert [c[0] for c in fake.calls] == ["register", "register"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # warned once per Registrar
        r.register(0x10000, 4096, read_only=True)          # new memory there: asked again
        r.register(0x80000, 4096, read_only=False)         # writable memory registers
    assert len(registers(fake)) == 4 and r.is_registered(0x80000)


def test_a_strict_registrar_raises():
    r = Registrar(cudart=FakeCudart(refuse=lambda *a: 801), strict=True)
    with pytest.raises(PinError, match=r"cudaHostRegister\(0x10000, 4096, flags=9\) failed: operation not supported"):
        r.register(0x10000, 4096, read_only=True)
    assert not r.is_registered(0x10000)


def test_a_failed_unregister_warns_and_forgets():
    fake = FakeCudart(unregister_error=1)
    r = Registrar(cudart=fake)
    hook = r.register(0x10000, 4096, read_only=False)
    with pytest.warns(PinWarning, match="cudaHostUnregister"):
        hook()
    assert not r.is_registered(0x10000) and fake.last_error == 0


@pytest.mark.skipif(cuda_here(), reason="CUDA is available here")
def test_the_default_registrar_falls_back_without_cuda():
    """No fake: torch's runtime, or none (no torch, no CUDA). Registering is then refused
    with a warning, never an error."""
    buf = np.zeros(1 << 16, np.uint8)
    r = Registrar()
    with pytest.warns(PinWarning, match="cannot register the pool's memory with CUDA"):
        hook = r.register(buf.ctypes.data, buf.nbytes, read_only=False)
    assert not r.is_registered(buf.ctypes.data) and r.runtime is None
    hook()
    with pytest.raises(PinError, match="CUDA is not available|torch is not installed"):
        Registrar(strict=True).register(buf.ctypes.data, buf.nbytes, read_only=False)


def test_a_forked_child_registers_nothing():
    fake = FakeCudart()
    r = Registrar(cudart=fake)
    hook = r.register(0x10000, 4096, read_only=True)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            r.register(0x40000, 4096, read_only=True)
            hook()
            r.unregister(0x10000)
            os.write(wr, str(len(fake.calls)).encode())
        finally:
            os._exit(0)
    os.close(wr)
    calls = int(os.read(rd, 16))
    os.close(rd)
    os.waitpid(pid, 0)
    assert calls == 1 and r.is_registered(0x10000)


# -- pinning a batch --------------------------------------------------------------------------
Pair = collections.namedtuple("Pair", "image label")


class Custom:
    """An object with its own pin_memory(), as torch's helper allows."""

    def __init__(self, pinned=False):
        self.pinned = pinned

    def pin_memory(self):
        return Custom(pinned=True)


def same_build(a, b, registered_ids=()):
    """@a and @b built alike: same types all the way down, equal tensors; a tensor of @a
    whose id is in @registered_ids is the very object of @b."""
    import torch
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same_build(a[k], b[k], registered_ids)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same_build(x, y, registered_ids)
    elif isinstance(a, Custom):
        assert a.pinned == b.pinned
    elif isinstance(a, np.ndarray):
        assert a is b
    else:
        assert a == b


def test_pin_batch_builds_what_torch_builds(monkeypatch):
    """torch's pin_memory(batch) on this machine, with Tensor.pin_memory() standing in for
    the copy, is the oracle for the structure; tensors in registered memory are left as
    they are, every other one is copied."""
    torch = pytest.importorskip("torch")
    from torch.utils.data._utils.pin_memory import pin_memory as torch_pin_memory
    copied = []

    def fake_pin(self, device=None):
        copied.append(self.data_ptr())
        return self.clone()
    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)

    pool = np.zeros(1 << 16, np.uint8)                     # "the segment"
    fake = FakeCudart()
    r = Registrar(cudart=fake)
    r.register(pool.ctypes.data, 4096, read_only=True)     # its first page only
    in_pool = torch.from_numpy(pool[:256].view(np.float32).reshape(8, 8))
    view = in_pool[2:, 1:]                                  # a view, storage still in the page
    across = torch.from_numpy(pool[4000:4200])              # runs past the registration
    outside = torch.ones(3)
    batch = {
        "image": in_pool, "view": view, "across": across, "outside": outside,
        "pair": (in_pool, outside), "named": Pair(in_pool, outside), "list": [view, "x", b"y", 3, None],
        "numpy": pool[:4], "custom": Custom(), "range": range(2), "od": collections.OrderedDict(a=outside),
    }
    expect = torch_pin_memory(batch)
    copied.clear()
    got = pin_batch(batch, r, _pin.torch_pin(None))
    same_build(got, expect)
    assert got["image"] is in_pool and got["view"] is view and got["pair"][0] is in_pool
    assert got["named"].image is in_pool and got["list"][0] is view
    assert got["outside"] is not outside and got["across"] is not across and got["pair"][1] is not outside
    assert sorted(copied) == sorted([across.data_ptr()] + [outside.data_ptr()] * 4)
    assert got["numpy"] is batch["numpy"] and got["custom"].pinned
    # No registrar: everything is torch's copy, built as torch builds it.
    copied.clear()
    same_build(pin_batch(batch, None, _pin.torch_pin(None)), expect)
    assert len(copied) == 10


def test_pinner_pins_through_the_registrar(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, device=None: self.clone())
    pool = np.zeros(8192, np.uint8)
    r = Registrar(cudart=FakeCudart())
    r.register(pool.ctypes.data, pool.nbytes, read_only=False)
    events = []
    pinner = Pinner(plan(True, "", True), registrar=r, fence=ReleaseFence(event=event_maker(events)))
    t = torch.from_numpy(pool[:64])
    got = pinner((t, torch.zeros(2)))
    assert type(got) is list and got[0] is t and got[1] is not None
    released = []
    pinner.release(lambda: released.append(1))
    assert released == [] and pinner.poll() == 1
    events[0].done = True
    assert pinner.poll() == 0 and released == [1]


# -- holding slots until the GPU is done ------------------------------------------------------
class Event:
    def __init__(self):
        self.recorded = self.done = False

    def record(self):
        self.recorded = True

    def query(self):
        return self.done

    def synchronize(self):
        self.done = True


def event_maker(made: list):
    def event():
        made.append(Event())
        return made[-1]
    return event


def test_release_fence_holds_releases_until_the_copies_are_done():
    made = []
    fence = ReleaseFence(event=event_maker(made))
    released = []
    for i in range(3):
        fence.release_later(lambda i=i: released.append(i))
    assert released == [] and len(fence) == 3 and all(e.recorded for e in made)
    assert fence.poll() == 3 and released == []
    made[1].done = True
    assert fence.poll() == 2 and released == [1]
    fence.drain()
    assert sorted(released) == [0, 1, 2] and len(fence) == 0 and fence.poll() == 0


def test_a_disabled_fence_releases_at_once():
    fence = ReleaseFence(enabled=False, event=lambda: pytest.fail("no event without pinning"))
    released = []
    fence.release_later(lambda: released.append(1))
    assert released == [1] and len(fence) == 0


# -- the hook, with a real pool ---------------------------------------------------------------
def test_the_segment_is_unregistered_before_it_is_detached(daemon):
    """The consumer's attachment (read-write: the kernel lets the owner write) is registered
    once, without the read-only flag; when its last view goes, the hook unregisters it while
    it is still mapped; the detach comes after."""
    fake = FakeCudart()
    still_mapped = []
    fake.on_unregister = lambda addr: still_mapped.append(mapped(addr))
    r = Registrar(cudart=fake)
    pinner = Pinner(plan(True, "", True), registrar=r, fence=ReleaseFence(enabled=False))
    with shmbroker.connect("producer", daemon.path) as prod, shmbroker.connect("consumer", daemon.path) as cons:
        prod.create("pinned", slot_size=4096, slots=2).put(np.arange(64, dtype=np.float32))
        pool = cons.open("pinned")
        segment = pool._memory()
        addr, size = segment.addr, segment.size
        pinner.segment(segment)
        pinner.segment(segment)                            # once is enough, twice is harmless
        assert not segment.view.readonly
        assert fake.calls == [("register", addr, size, RW)] and mapped(addr)
        batch = pool.get()
        a = batch.array
        assert r.covers(a.ctypes.data, a.nbytes)
        batch.release()
        del segment, batch
        pool.close()
        gc.collect()
        assert r.is_registered(addr) and len(fake.calls) == 1    # a view is left
        del a
        gc.collect()
        assert fake.calls[1:] == [("unregister", addr)] and still_mapped == [True]
        assert not r.is_registered(addr)
        cons.status()                                      # the next call detaches
        assert not mapped(addr)

"""pin_memory for shmbroker.DataLoader: host-to-device copies straight from the pool.

torch's DataLoader(pin_memory=True) copies every batch into page-locked memory that it
allocates for it (PyTorch issue 78018), so that the trainer's ``x.cuda(non_blocking=True)``
is a DMA from pinned memory. A shmbroker batch already lies in a segment that stays
attached for the life of the pool: registering that whole attachment with CUDA once
(cudaHostRegister) makes every batch in it pinned memory as it is, with no copy. torch
then sees the batch's tensors as pinned (Tensor.is_pinned() asks cudaPointerGetAttributes,
which answers "host" for registered memory, and Tensor.pin_memory() returns a pinned tensor
itself), so everything downstream works as with torch's own pinned batches.

The pieces, and what the loader calls when:

- ``plan(pin_memory, pin_memory_device, cuda_available)``: torch's rules, as a value
  (``plan_for()`` asks torch whether CUDA is available). Made once per loader; its
  ``warn()`` is called where torch warns, when an iterator is made.
- ``Registrar``: registers segments with CUDA, once each; ``register()`` returns the hook
  that unregisters, which must run before the segment is detached.
- ``pin_batch(data, registrar, fallback)``: a batch with every tensor in registered memory
  left as it is, every other one pinned by ``fallback`` (torch's copy).
- ``ReleaseFence``: holds a slot back from the daemon until the GPU is past the copies
  queued from it (a copy from registered memory is truly asynchronous, and torch tracks it
  only for memory its own allocator made).
- ``Pinner``: the above together, the one object a loader keeps.

Without CUDA, pin_memory=True is accepted and ignored, as torch's loader does.
"""
from __future__ import annotations

import bisect
import collections.abc
import contextlib
import ctypes
import ctypes.util
import functools
import os
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

# cudaHostRegister flags (cuda_runtime_api.h).
HOST_REGISTER_DEFAULT = 0
HOST_REGISTER_PORTABLE = 1      # pinned for every CUDA context of the process, not only the current one
HOST_REGISTER_MAPPED = 2
HOST_REGISTER_READ_ONLY = 8     # CUDA >= 11.1; needs cudaDevAttrHostRegisterReadOnlySupported

# cudaError_t values named in messages.
CUDA_SUCCESS = 0
CUDA_ERROR_INVALID_VALUE = 1
CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712
CUDA_ERROR_NOT_SUPPORTED = 801
DEV_ATTR_HOST_REGISTER_READ_ONLY_SUPPORTED = 113   # cudaDevAttrHostRegisterReadOnlySupported

# torch 1.13's text, verbatim (the missing space included), so that a warnings filter
# written for torch's loader matches ours.
DEVICE_WITHOUT_PIN_WARNING = ("pin memory device is set and pin_memory flag is not used then device pinned memory "
                              "won't be usedplease set pin_memory to true, if you need to use the device pin memory")

_CUDA_DEVICE = re.compile(r"cuda(:[0-9]+)?")


class PinError(RuntimeError):
    """Registering memory with CUDA failed (raised by a strict Registrar only)."""


class PinWarning(UserWarning):
    """Pinning fell back from registering the pool's memory to copying each batch."""


# -- the decision ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What pin_memory means for one loader.

    ``pin``: batches are pinned (torch's ``_pin_memory``). ``device``: the device passed on
    to torch's pin_memory() (torch's ``_pin_memory_device``: None unless one was given).
    ``register``: pinned by registering the pool's segments with CUDA; otherwise every batch
    is pinned by torch's own copy. ``warning``: the warning torch gives for these arguments,
    or None. ``why``: one line saying why, for people."""

    pin: bool
    device: Optional[str]
    register: bool
    warning: Optional[str]
    why: str

    def warn(self, stacklevel: int = 3) -> None:
        """Give the warning torch's loader gives here (call it where torch does: each time
        an iterator is made)."""
        if self.warning:
            warnings.warn(self.warning, stacklevel=stacklevel)


def plan(pin_memory: bool, pin_memory_device: str, cuda_available: bool) -> Plan:
    """torch's rules (_BaseDataLoaderIter.__init__): with no device named, pin only when
    CUDA is available, and silently not otherwise; with a device named, pin exactly when
    pin_memory says so, and warn when it does not.

    Pinning registers the pool's memory with CUDA when the device is CUDA ("", "cuda" or
    "cuda:N") and CUDA is available. Any other device ("mps", "xpu", ...) is left to
    torch's pin_memory(batch, device), a copy of every batch, exactly as torch's loader
    does; so is "cuda" without CUDA, which fails there as it fails in torch's loader."""
    if not isinstance(pin_memory_device, str):
        raise TypeError(f"pin_memory_device must be a string (\"\", \"cuda\", \"cuda:1\", ...), "
                        f"not {type(pin_memory_device).__name__}")
    pin_memory = bool(pin_memory)
    if not pin_memory_device:
        if not pin_memory:
            return Plan(False, None, False, None, "pin_memory is off")
        if not cuda_available:
            return Plan(False, None, False, None, "pin_memory without CUDA is accepted and ignored, as torch does")
        return Plan(True, None, True, None, "CUDA: the pool's segments are registered with CUDA, no batch is copied")
    if not pin_memory:
        return Plan(False, pin_memory_device, False, DEVICE_WITHOUT_PIN_WARNING,
                    "a pin_memory_device without pin_memory pins nothing (torch warns)")
    if _CUDA_DEVICE.fullmatch(pin_memory_device):
        if cuda_available:
            return Plan(True, pin_memory_device, True, None,
                        f"{pin_memory_device}: the pool's segments are registered with CUDA, no batch is copied")
        return Plan(True, pin_memory_device, False, None,
                    f"{pin_memory_device} without CUDA: torch's pin_memory copy, which fails as in torch's loader")
    return Plan(True, pin_memory_device, False, None,
                f"{pin_memory_device} is not CUDA: torch's pin_memory() copies every batch, as in torch's loader")


def cuda_available() -> bool:
    """torch.cuda.is_available(), and False without torch."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def plan_for(pin_memory: bool, pin_memory_device: str = "") -> Plan:
    """plan() for a loader's arguments, asking torch whether CUDA is available only when the
    answer matters (as torch's loader asks)."""
    return plan(pin_memory, pin_memory_device, bool(pin_memory) and cuda_available())


# -- the CUDA runtime -------------------------------------------------------------------------
def _noop() -> None:
    pass


class _Runtime:
    """cudaHostRegister and its neighbours, whichever object provides them: torch's cudart
    binding, libcudart through ctypes, or an object a test injects. Return codes are ints."""

    def __init__(self, api: Any, name: str, libcudart: Any = None, torch: Any = None):
        self.api, self.name, self.lib, self.torch = api, name, libcudart, torch

    def register(self, addr: int, size: int, flags: int) -> int:
        return int(self.api.cudaHostRegister(addr, size, flags))

    def unregister(self, addr: int) -> int:
        return int(self.api.cudaHostUnregister(addr))

    def error_string(self, code: int) -> str:
        fn = getattr(self.api, "cudaGetErrorString", None)
        if fn is None:
            return f"CUDA error {code}"
        try:
            if hasattr(self.api, "cudaError"):   # torch's binding takes its cudaError enum
                return str(fn(self.api.cudaError(code)))
            text = fn(code)
            return text.decode() if isinstance(text, bytes) else str(text)
        except Exception:
            return f"CUDA error {code}"

    def clear_last_error(self) -> None:
        """A failed runtime call stays the thread's last error, and torch checks the last
        error after its kernel launches: a refused registration would surface later, as the
        failure of some unrelated kernel. torch's binding cannot clear it, so the runtime
        library torch uses (found mapped in this process) clears it."""
        clear = getattr(self.lib if self.lib is not None else self.api, "cudaGetLastError", None)
        if clear is None:
            return
        try:
            clear()
        except Exception:
            pass

    def current_device(self) -> Optional[int]:
        if self.torch is not None:
            return int(self.torch.cuda.current_device())
        return None

    def on_device(self, device: Optional[int]):
        """A context in which the runtime works on @device (the one that registered)."""
        if self.torch is not None and device is not None:
            return self.torch.cuda.device(device)
        return contextlib.nullcontext()


def _mapped_libcudart() -> Optional[str]:
    """The path of the libcudart already loaded into this process (torch's), if any."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1]
                if "/libcudart" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return None


def _load_libcudart(path: Optional[str] = None) -> Any:
    """libcudart through ctypes: @path, else the copy already loaded in this process (torch's:
    the same runtime, so the same last error and contexts), else the system's. OSError if
    there is none."""
    names = [path] if path else [p for p in (_mapped_libcudart(), ctypes.util.find_library("cudart")) if p]
    names += [] if path else ["libcudart.so", "libcudart.so.12", "libcudart.so.11.0"]
    last: Optional[OSError] = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            last = exc
    else:
        raise OSError(f"no CUDA runtime library (libcudart) found: {last}")
    lib.cudaHostRegister.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
    lib.cudaHostRegister.restype = ctypes.c_int
    lib.cudaHostUnregister.argtypes = [ctypes.c_void_p]
    lib.cudaHostUnregister.restype = ctypes.c_int
    lib.cudaGetErrorString.argtypes = [ctypes.c_int]
    lib.cudaGetErrorString.restype = ctypes.c_char_p
    lib.cudaGetLastError.argtypes = []
    lib.cudaGetLastError.restype = ctypes.c_int
    lib.cudaDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]
    lib.cudaDeviceGetAttribute.restype = ctypes.c_int
    return lib


def _default_runtime() -> _Runtime:
    """torch's cudart binding (torch.cuda.cudart(): cudaHostRegister(ptr, size, flags) and
    cudaHostUnregister(ptr), both returning a cudaError), else libcudart through ctypes.
    PinError when there is no CUDA to register with."""
    try:
        import torch
    except ImportError as exc:
        raise PinError("torch is not installed") from exc
    if not torch.cuda.is_available():
        raise PinError("CUDA is not available")
    binding = torch.cuda.cudart()          # initialises CUDA, as torch's own pinning would
    # The runtime torch uses, when it is a library of its own (not linked into torch):
    # only that one shares torch's last error.
    mapped = _mapped_libcudart()
    lib = None
    if mapped:
        try:
            lib = _load_libcudart(mapped)
        except OSError:
            pass
    if hasattr(binding, "cudaHostRegister") and hasattr(binding, "cudaHostUnregister"):
        return _Runtime(binding, "torch.cuda.cudart()", libcudart=lib, torch=torch)
    try:
        lib = lib or _load_libcudart()
    except OSError as exc:
        raise PinError(f"torch's cudart binding has no cudaHostRegister, and {exc}") from exc
    return _Runtime(lib, "libcudart (ctypes)", libcudart=lib, torch=torch)


# -- registering segments ---------------------------------------------------------------------
class _Registration:
    __slots__ = ("addr", "size", "read_only", "flags", "device", "hook")

    def __init__(self, addr: int, size: int, read_only: bool, flags: int, device: Optional[int]):
        self.addr, self.size, self.read_only, self.flags, self.device = addr, size, read_only, flags, device
        self.hook: Callable[[], None] = _noop


class Registrar:
    """Segment attachments registered with CUDA, each once.

    ``cudart``: the object with cudaHostRegister(ptr, size, flags) and
    cudaHostUnregister(ptr), each returning a cudaError (0: success), and optionally
    cudaGetErrorString(code) and cudaGetLastError(); by default torch's
    (torch.cuda.cudart()), else libcudart through ctypes, found at the first register().

    A registration CUDA refuses (no CUDA, an old runtime, a read-only mapping on a GPU that
    cannot register read-only memory, ...) is not an error: that memory is simply not
    registered, and its batches are pinned by torch's copy, as torch's loader pins every
    batch; a PinWarning says so once per Registrar, with CUDA's reason (``failures`` keeps
    them all). With ``strict=True`` it raises PinError instead (for checks and benchmarks
    that must know they measure the registered path).

    Registered memory must be unregistered before it is detached: CUDA keeps the pages it
    pinned, and a later mapping at the same address would not be what the GPU reads. So
    register() returns the hook that unregisters, for the code that knows when the last
    view of the segment goes (client._Segment.on_detach()).

    Safe to use from several threads; the hooks may run in any thread (they run when the
    last view goes). In a forked child it does nothing: CUDA cannot be used there, and the
    parent's registrations are the parent's."""

    def __init__(self, cudart: Any = None, *, strict: bool = False):
        self._runtime: Any = None if cudart is None else _Runtime(cudart, type(cudart).__name__)
        self._unavailable: Optional[str] = None
        self.strict = strict
        self._lock = threading.RLock()
        self._by_addr: dict[int, _Registration] = {}
        self._starts: list[int] = []               # sorted addresses of _by_addr
        self._refused: dict[tuple[int, int], str] = {}
        self._pid = os.getpid()
        self._warned = False
        #: Why registrations were refused, oldest first.
        self.failures: list[str] = []

    # -- the runtime ---------------------------------------------------------------------
    def _get_runtime(self) -> Optional[_Runtime]:
        if self._runtime is None and self._unavailable is None:
            try:
                self._runtime = _default_runtime()
            except PinError as exc:
                self._unavailable = str(exc)
        return self._runtime

    @property
    def runtime(self) -> Optional[str]:
        """Which runtime registers ("torch.cuda.cudart()", "libcudart (ctypes)", the injected
        object's type), None before the first register() or when there is no CUDA."""
        return None if self._runtime is None else self._runtime.name

    # -- the API -------------------------------------------------------------------------
    def register(self, addr: int, size: int, read_only: bool) -> Callable[[], None]:
        """Register the attachment of @size bytes at @addr (read-only where the mapping is:
        cudaHostRegisterReadOnly) with CUDA, unless it already is: registering the same
        (addr, size) again changes nothing. Returns the hook to call before the segment is
        detached (it unregisters; calling it again, or after unregister(), does nothing;
        it is a no-op when registration was refused). A range that overlaps another
        registration is a ValueError: the memory there was detached without unregistering."""
        addr, size, read_only = int(addr), int(size), bool(read_only)
        if addr <= 0 or size <= 0:
            raise ValueError(f"cannot register {size} bytes at {addr:#x}")
        if os.getpid() != self._pid:
            return _noop
        with self._lock:
            reg = self._by_addr.get(addr)
            if reg is not None and reg.size == size:
                return reg.hook
            if (addr, size) in self._refused:
                return functools.partial(self._forget_refusal, addr, size)
            other = reg if reg is not None else self._overlapping(addr, size)
            if other is not None:
                raise ValueError(f"{size} bytes at {addr:#x} overlap the {other.size} bytes registered at "
                                 f"{other.addr:#x}: memory must be unregistered (the hook register() returned) "
                                 "before its segment is detached")
            flags = HOST_REGISTER_PORTABLE | (HOST_REGISTER_READ_ONLY if read_only else 0)
            rt = self._get_runtime()
            if rt is None:
                return self._refuse(addr, size, f"cannot register the pool's memory with CUDA: {self._unavailable}")
            rc = rt.register(addr, size, flags)
            if rc != CUDA_SUCCESS:
                rt.clear_last_error()
                return self._refuse(addr, size, self._refusal(rt, rc, addr, size, flags))
            reg = _Registration(addr, size, read_only, flags, rt.current_device())
            reg.hook = functools.partial(self._release, reg)
            self._by_addr[addr] = reg
            bisect.insort(self._starts, addr)
            return reg.hook

    def unregister(self, addr: int) -> None:
        """Unregister the memory registered at @addr now (nothing if none is). Call before
        the segment is detached."""
        with self._lock:
            reg = self._by_addr.get(int(addr))
        if reg is not None:
            self._release(reg)

    def is_registered(self, addr: int) -> bool:
        """Whether a registration starts at @addr."""
        with self._lock:
            return int(addr) in self._by_addr

    def covers(self, ptr: int, nbytes: int) -> bool:
        """Whether the @nbytes at @ptr lie wholly in registered memory."""
        if nbytes <= 0 or ptr <= 0:
            return False
        with self._lock:
            i = bisect.bisect_right(self._starts, ptr) - 1
            if i < 0:
                return False
            reg = self._by_addr[self._starts[i]]
            return ptr + nbytes <= reg.addr + reg.size

    def close(self) -> None:
        """Unregister everything still registered."""
        with self._lock:
            regs = list(self._by_addr.values())
        for reg in regs:
            self._release(reg)

    # -- inside ----------------------------------------------------------------------------
    def _overlapping(self, addr: int, size: int) -> Optional[_Registration]:
        i = bisect.bisect_right(self._starts, addr)
        if i > 0:
            prev = self._by_addr[self._starts[i - 1]]
            if prev.addr + prev.size > addr:
                return prev
        if i < len(self._starts) and self._starts[i] < addr + size:
            return self._by_addr[self._starts[i]]
        return None

    def _refusal(self, rt: _Runtime, rc: int, addr: int, size: int, flags: int) -> str:
        why = f"cudaHostRegister({addr:#x}, {size}, flags={flags}) failed: {rt.error_string(rc)} ({rc})"
        if flags & HOST_REGISTER_READ_ONLY and rc in (CUDA_ERROR_NOT_SUPPORTED, CUDA_ERROR_INVALID_VALUE):
            why += ("; the pool is attached read-only here, and this GPU or CUDA runtime cannot register "
                    "read-only memory (cudaDevAttrHostRegisterReadOnlySupported is 0, or CUDA is older than "
                    "11.1): a writable attachment could be registered")
        return why

    def _refuse(self, addr: int, size: int, why: str) -> Callable[[], None]:
        if self.strict:
            raise PinError(why)
        self._refused[(addr, size)] = why
        self.failures.append(why)
        if not self._warned:
            self._warned = True
            warnings.warn(f"shmbroker: {why}. Batches in that memory are pinned by copying them, as torch's "
                          "DataLoader pins every batch", PinWarning, stacklevel=3)
        return functools.partial(self._forget_refusal, addr, size)

    def _forget_refusal(self, addr: int, size: int) -> None:
        """The hook of a refused registration: once the segment is gone, other memory may
        come to the same address."""
        with self._lock:
            self._refused.pop((addr, size), None)

    def _release(self, reg: _Registration) -> None:
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._by_addr.get(reg.addr) is not reg:
                return                       # already unregistered (or a stale hook)
            del self._by_addr[reg.addr]
            self._starts.remove(reg.addr)
            rt = self._runtime
            with rt.on_device(reg.device):
                rc = rt.unregister(reg.addr)
            if rc != CUDA_SUCCESS:
                rt.clear_last_error()
                why = f"cudaHostUnregister({reg.addr:#x}) failed: {rt.error_string(rc)} ({rc})"
                self.failures.append(why)
                # Hooks run where the last view goes (often a __del__): say it, never raise.
                warnings.warn(f"shmbroker: {why}", PinWarning, stacklevel=2)


# -- pinning a batch ----------------------------------------------------------------------
def _storage_span(tensor: Any) -> tuple[int, int]:
    storage = tensor.untyped_storage() if hasattr(tensor, "untyped_storage") else tensor.storage()
    return storage.data_ptr(), storage.nbytes()


def pin_batch(data: Any, registrar: Optional[Registrar], fallback: Callable[[Any], Any]) -> Any:
    """@data (a batch as the loader built it) pinned: what torch's
    torch.utils.data._utils.pin_memory.pin_memory(data, device) returns, built the same
    way (a tuple becomes a list, namedtuples, mappings and sequences keep their type where
    they can, strings and other objects stay as they are), except that a CPU tensor whose
    memory lies wholly in memory @registrar registered is returned as it is: it is pinned
    already (torch's is_pinned() asks CUDA about the storage's pointer, and CUDA answers
    "host" for registered memory). Every other tensor, and every object with a
    pin_memory() method, goes to @fallback, which pins it: torch's
    pin_memory(leaf, device) (Pinner passes exactly that)."""
    import torch
    tensor_type = torch.Tensor

    def pin(x: Any) -> Any:
        if isinstance(x, tensor_type):
            if registrar is not None and x.device.type == "cpu" and registrar.covers(*_storage_span(x)):
                return x
            return fallback(x)
        if isinstance(x, (str, bytes)):
            return x
        if isinstance(x, collections.abc.Mapping):
            items = {k: pin(v) for k, v in x.items()}
            try:
                return type(x)(items)
            except TypeError:            # a mapping type that cannot be built from a dict
                return items
        if isinstance(x, tuple) and hasattr(x, "_fields"):         # namedtuple
            return type(x)(*(pin(v) for v in x))
        if isinstance(x, tuple):
            return [pin(v) for v in x]   # as torch's: a list, "for backwards compatibility"
        if isinstance(x, collections.abc.Sequence):
            items = [pin(v) for v in x]
            try:
                return type(x)(items)
            except TypeError:            # e.g. range
                return items
        if hasattr(x, "pin_memory"):
            return fallback(x)
        return x

    return pin(data)


def torch_pin(device: Optional[str]) -> Callable[[Any], Any]:
    """torch's own pinning of one leaf: pin_memory(leaf, device), a copy into memory that
    torch's pinned allocator owns."""
    from torch.utils.data._utils.pin_memory import pin_memory
    return functools.partial(pin_memory, device=device)


# -- holding slots until the GPU has read them -------------------------------------------------
class ReleaseFence:
    """Slot releases held back until the GPU is past the copies queued from the slot.

    A copy from registered memory (``x.cuda(non_blocking=True)``) returns before the DMA
    is done. For memory from its own pinned allocator torch records an event and reuses the
    block only after it; for registered memory it records nothing. A slot released while
    such a copy runs could be rewritten by a worker under the DMA. So the loader hands each
    release to release_later(), which records an event on the current CUDA stream; the
    release happens in poll() or drain() once the GPU has passed that event, i.e. every
    copy queued on that stream before the release was asked for. Copies on another stream
    are covered once that stream is joined to the current one (wait_stream) before the
    batch's tensors are dropped.

    release_later() only records and queues (it may run in a __del__, even during a
    library call): releases run in poll() and drain(), which the loader calls where it may
    talk to the daemon. While releases are pending the loader must not block for the next
    batch without polling: the workers may be waiting for exactly those slots.

    ``event``: makes an event with record(), query() and synchronize() (torch.cuda.Event
    by default). With ``enabled=False`` a release runs at once."""

    def __init__(self, enabled: bool = True, event: Optional[Callable[[], Any]] = None):
        self.enabled = enabled
        self._event = event
        self._lock = threading.RLock()
        self._pending: list[tuple[Any, Callable[[], None]]] = []

    def _new_event(self) -> Any:
        if self._event is None:
            import torch
            self._event = torch.cuda.Event
        return self._event()

    def release_later(self, release: Callable[[], None]) -> None:
        if not self.enabled:
            release()
            return
        event = self._new_event()
        event.record()
        with self._lock:
            self._pending.append((event, release))

    def poll(self) -> int:
        """Run the releases whose copies are done; how many are still pending."""
        done, left = [], []
        with self._lock:
            for p in self._pending:
                (done if p[0].query() else left).append(p)
            self._pending = left
        for _, release in done:
            release()
        return len(left)

    def drain(self) -> None:
        """Wait for every pending copy, then run every pending release."""
        with self._lock:
            pending, self._pending = self._pending, []
        for event, release in pending:
            event.synchronize()
            release()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


# -- for the loader ----------------------------------------------------------------------
class Pinner:
    """pin_memory for one loader: its plan, its registrar, its fence.

        pinner = Pinner.for_loader(pin_memory, pin_memory_device)   # in DataLoader.__init__
        pinner.plan.warn()                                          # where torch warns: each iterator made
        pinner.segment(pool._memory())                              # once per pool attachment, in the trainer
        batch = pinner(batch)                                       # each batch, before it is yielded
        pinner.release(lambda: pool release of the slot)            # instead of releasing a slot at once
        pinner.poll()                                               # before each wait for a batch (and in it)
        pinner.drain()                                              # before closing the pool or the client

    Without pinning (pin_memory off, or no CUDA) every call passes through: batches and
    releases are untouched."""

    def __init__(self, plan: Plan, registrar: Optional[Registrar] = None, fence: Optional[ReleaseFence] = None,
                 fallback: Optional[Callable[[Any], Any]] = None):
        self.plan = plan
        self.registrar = registrar if registrar is not None else (Registrar() if plan.register else None)
        self.fence = fence if fence is not None else ReleaseFence(enabled=plan.register)
        self._fallback = fallback

    @classmethod
    def for_loader(cls, pin_memory: bool, pin_memory_device: str = "") -> "Pinner":
        return cls(plan_for(pin_memory, pin_memory_device))

    def segment(self, segment: Any) -> None:
        """Register a pool's attachment (a client._Segment: ``addr``, ``size``, ``view``,
        ``on_detach()``) so that its batches are pinned as they are; it is unregistered
        when its last view goes, before it is detached."""
        if self.plan.register and self.registrar is not None:
            segment.on_detach(self.registrar.register(segment.addr, segment.size, segment.view.readonly))

    def __call__(self, data: Any) -> Any:
        if not self.plan.pin:
            return data
        if self._fallback is None:
            self._fallback = torch_pin(self.plan.device)
        return pin_batch(data, self.registrar if self.plan.register else None, self._fallback)

    def release(self, release: Callable[[], None]) -> None:
        self.fence.release_later(release)

    def poll(self) -> int:
        return self.fence.poll()

    def drain(self) -> None:
        self.fence.drain()

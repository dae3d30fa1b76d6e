"""shmbroker: zero-copy numpy batches between processes through shmbrokerd.

    import numpy as np, shmbroker

    with shmbroker.connect(role="producer") as c:
        pool = c.create("train", slot_size=16 << 20, slots=8)
        pool.put(np.ones((64, 3, 224, 224), np.uint8), meta={"epoch": 0}, seq=0)
        pool.end()

    with shmbroker.connect(role="consumer") as c:
        for batch in c.open("train"):
            x = batch.array          # a view of the shared memory, no copy; writable while held
"""
from . import _version
from .client import Batch, Client, Pool, Slot, connect
from .errors import (BadRequest, BrokerError, ConnectionLost, EndOfStream, LimitExceeded, NoDaemon, NoSuchPool,
                     NotHolder, PermissionDenied, PoolExists, Timeout, WorkerError, WrongRole)

# The DataLoader imports torch when it is installed (it is torch's DataLoader then): only a
# program that asks for it pays for that import.
_LOADER = ("DataLoader", "WorkerInfo", "default_collate", "get_worker_info")


def __getattr__(name: str):
    if name in _LOADER:
        from . import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'shmbroker' has no attribute {name!r}")


__all__ = [
    "connect", "Client", "Pool", "Slot", "Batch", "DataLoader", "default_collate", "get_worker_info", "WorkerInfo",
    "BrokerError", "Timeout", "NoSuchPool", "PoolExists", "NotHolder", "PermissionDenied", "LimitExceeded",
    "BadRequest", "WrongRole", "ConnectionLost", "NoDaemon", "EndOfStream", "WorkerError",
]
__version__ = _version.version()

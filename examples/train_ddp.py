#!/usr/bin/python3
"""Data-parallel training under torchrun: one loader per rank, one shmbroker daemon per machine.

On one machine, two ranks (gloo over loopback), both loaders feeding from the same daemon:

    build/shmbrokerd --socket /tmp/shmbroker.sock --config /dev/null &   # or: systemctl start shmbrokerd
    export SHMBROKER_SOCKET=/tmp/shmbroker.sock
    torchrun --standalone --nproc_per_node=2 --redirects 1 --tee 1 examples/train_ddp.py --loader shmbroker

Each rank trains a replica of examples/train_torch.py's model (DistributedDataParallel)
on its own share of the dataset: a DistributedSampler, given the epoch with set_epoch()
before each epoch, hands each rank a disjoint part of a new shuffle; the rank's DataLoader
(torch's, or shmbroker's with ``--loader shmbroker``: the one line that differs) runs its
own worker processes. shmbroker's loaders of every rank on a machine share that machine's
daemon, the one $SHMBROKER_SOCKET names (else the default socket,
/run/shmbroker/shmbroker.sock, where the shmbrokerd service listens); each loader has its
own pool in it. Only the batches' slots are shared memory: gradients go through
torch.distributed as usual.

At the end of each epoch the ranks compare what they saw: the sample indices of the ranks
are disjoint and together are the whole dataset, each rank got exactly its sampler's
indices in its sampler's order, and the epochs were shuffled differently; then that the
loss is finite, that the replicas' weights are equal, and that the ranks of a machine
used one daemon. Any failure ends the run with an error.

Several machines: the same script under torchrun's multi-node launch, one daemon per
machine (each started there, e.g. by the shmbrokerd service, and named by
$SHMBROKER_SOCKET on that machine if not at the default socket). On every node, with
the same rendezvous endpoint (host:port of one of them, reachable by all):

    torchrun --nnodes=2 --node_rank=N --nproc_per_node=2 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29400 --rdzv_id=job1 examples/train_ddp.py --loader shmbroker

(N is 0 on one node and 1 on the other; --node_rank can be left out with the c10d
rendezvous.) The batches never leave their machine: each rank's loader feeds that rank
alone through its machine's daemon, and only torch.distributed talks across machines.
The check of disjoint indices then spans every rank of every node; the check of one
daemon per machine groups the ranks by host name.
"""
from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_torch import (SyntheticImages, SyntheticImagesInPlace, cpu_seconds, daemon_pid,  # noqa: E402
                         make_model)


def loader_class(kind: str):
    if kind == "torch":
        from torch.utils.data import DataLoader
    else:
        from shmbroker import DataLoader
    return DataLoader


def my_daemon() -> tuple:
    """(the pid of the shmbrokerd at $SHMBROKER_SOCKET or the default socket, whether this
    process is one of its clients other than an admin): after the first batch, whether this
    rank's loader uses that daemon. (None, False) where no daemon listens there."""
    pid = daemon_pid(None)
    if pid is None:
        return None, False
    import shmbroker
    with shmbroker.connect("admin", name="train_ddp-check") as c:
        clients = c.status()["clients"]
    return pid, any(cl.get("pid") == os.getpid() and cl.get("role") != "admin" for cl in clients)


def check_one_daemon_per_machine(rank: int, world: int) -> None:
    """The ranks of each machine (by host name) all feed from that machine's one daemon."""
    import torch.distributed as dist
    where = [None] * world
    dist.all_gather_object(where, (socket.gethostname(), *my_daemon()))
    for host in sorted({h for h, _, _ in where}):
        mine = [(r, pid, uses) for r, (h, pid, uses) in enumerate(where) if h == host]
        if any(pid is None for _, pid, _ in mine):
            if rank == 0:
                print(f"{host}: no shmbrokerd listens at $SHMBROKER_SOCKET or the default socket: each rank's "
                      "loader started a private daemon (run one per machine to share it)", flush=True)
            continue
        pids = {pid for _, pid, _ in mine}
        assert len(pids) == 1, f"the ranks on {host} found different daemons: {mine}"
        assert all(uses for _, _, uses in mine), f"on {host}, a rank's loader is not a client of the daemon: {mine}"
        if rank == 0:
            print(f"{host}: every rank's loader uses the shmbrokerd of pid {pids.pop()}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loader", choices=("torch", "shmbroker"), default="shmbroker")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="steps per epoch on each rank (default 5)")
    ap.add_argument("--workers", type=int, default=1, help="loader worker processes per rank (default 1)")
    ap.add_argument("--batch-size", type=int, default=32, help="per rank")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--write-sample", action="store_true", help="the dataset also offers write_sample(i, out)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    # The ranks of a machine share its cores: each gets its share for the model's math.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed + rank)

    # Every rank makes the same dataset (same seed): the sampler decides who sees what.
    n = world * args.steps * args.batch_size
    kind = SyntheticImagesInPlace if args.write_sample else SyntheticImages
    dataset = kind(n, args.image_size, seed=args.seed, with_index=True)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    DataLoader = loader_class(args.loader)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers)

    model = DistributedDataParallel(make_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    orders = []
    t0, c0 = time.perf_counter(), cpu_seconds()
    samples = 0
    try:
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            seen: list = []
            loss = torch.tensor(float("nan"))
            for step, (images, labels, index) in enumerate(loader):
                if epoch == 0 and step == 0 and args.loader == "shmbroker":
                    check_one_daemon_per_machine(rank, world)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(images), labels)
                loss.backward()                  # gradients averaged across the ranks here
                optimizer.step()
                seen += index.tolist()
                samples += len(index)
            assert seen == list(sampler), f"rank {rank}, epoch {epoch}: the loader did not follow its sampler"
            everyone = [None] * world
            dist.all_gather_object(everyone, seen)
            flat = [i for s in everyone for i in s]
            assert len(flat) == len(set(flat)), f"epoch {epoch}: the ranks saw overlapping samples"
            assert sorted(flat) == list(range(n)), f"epoch {epoch}: the ranks together did not see every sample"
            orders.append(seen)
            losses = [None] * world
            dist.all_gather_object(losses, float(loss))
            assert all(math.isfinite(x) for x in losses), f"epoch {epoch}: the loss is not finite: {losses}"
            if rank == 0:
                print(f"epoch {epoch}: {world} ranks saw disjoint samples covering all {n}, "
                      f"{len(seen) // args.batch_size} steps each; loss per rank "
                      + ", ".join(f"{x:.3f}" for x in losses), flush=True)
        if args.epochs > 1:
            assert orders[0] != orders[1], f"rank {rank}: set_epoch() did not reshuffle"
        weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(weights) for _ in range(world)]
        dist.all_gather(gathered, weights)
        assert all(torch.equal(g, weights) for g in gathered), "the replicas' weights differ"
    finally:
        if hasattr(loader, "close"):
            loader.close()
    dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"rank {rank}/{world} on {socket.gethostname()}: {args.loader} loader, {samples} samples in {dt:.1f} s "
          f"({samples / dt:.0f} samples/s), CPU of this rank and its loader workers {cpu:.1f} s", flush=True)
    dist.barrier()
    if rank == 0:
        print(f"OK: {world} ranks, {args.epochs} epochs, disjoint samples every epoch, finite loss, equal replicas")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

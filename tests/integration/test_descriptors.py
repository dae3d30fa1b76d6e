"""The daemon out of file descriptors: it stops accepting instead of spinning, and resumes
when a client leaves."""
from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from sbtest import wait_for


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process @pid so far (/proc/PID/stat utime, stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_accepting_pauses_until_a_client_leaves(daemon):
    """With RLIMIT_NOFILE just above the descriptors the daemon holds, clients connect
    until its descriptor table is full (the next accept() fails with EMFILE); the next
    connection waits in the backlog, the daemon logs it once and uses no CPU while it
    waits; a client that leaves makes room for it, and a second one ends the episode."""
    pid = daemon.proc.pid

    def failures():
        return [line for line in daemon.log_text().splitlines() if "Too many open files" in line]

    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    served = [daemon.client(role="admin")]
    try:
        fds = [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")]
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (max(fds) + 3, old[1]))
        while not failures():
            assert len(served) < 8, "the daemon accepts beyond its descriptor limit"
            served.append(daemon.client(role="admin"))
        waiting = daemon.client()
        waiting.send("hello", role="admin")
        with pytest.raises(socket.timeout):
            waiting.recv(timeout=0.5)
        before = cpu_seconds(pid)
        time.sleep(1)
        assert cpu_seconds(pid) - before < 0.2, "the daemon spins"
        assert len(failures()) == 1, failures()[:3]
        assert served[0].ok("status")["ok"]               # the clients it has are served meanwhile

        served.pop().close()
        assert waiting.recv(timeout=5)["ok"]               # accepted once a client left
        served.pop().close()                               # now there is room to spare
        wait_for(lambda: "accepting clients again" in daemon.log_text(), what="the end of the episode")
        assert len(failures()) == 1
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    daemon.client(role="admin").ok("status")

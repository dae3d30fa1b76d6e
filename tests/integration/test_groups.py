"""The group a client's create names: numbers that are no group are a bad request."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("group", ["4294967295", "4294967296", "18446744073709551616"])
def test_create_with_a_numeric_group_out_of_range_is_a_bad_request(daemon, group):
    """4294967295 is (gid_t)-1, "no change" to shmctl(IPC_SET); 4294967296 used to wrap to
    gid 0, root's group. Neither is a group: bad_request, nothing created, nothing logged
    as an error."""
    c = daemon.client(role="admin")
    r = c.err("create", "bad_request", pool="g", slot_size=4096, slots=1, mode="0660", group=group)
    assert group in r["message"]
    assert c.ok("status")["pools"] == []
    assert not [line for line in daemon.log_text().splitlines() if line.startswith("<3>")]

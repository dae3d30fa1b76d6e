"""libshmbroker as shipped: its exported symbols, and a program built with pkg-config
against an installed copy that moves batches through a running daemon."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from sbtest import ROOT

PROGRAM = r'''
#include <shmbroker.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
        sb_client *p, *c;
        sb_pool *pp, *cp;
        sb_batch b = { .eof = true };
        void *ptr; uint32_t slot; size_t cap;
        int n = 0;

        if (sb_connect(&p, argv[1], SB_ROLE_PRODUCER, "installed") || sb_connect(&c, argv[1], SB_ROLE_CONSUMER, NULL))
                return 1;
        if (sb_pool_create(p, &pp, "inst", 4096, 2, NULL) || sb_pool_open(c, &cp, "inst"))
                return 2;
        for (int i = 0; i < 100; i++) {
                if (sb_acquire(pp, 1000, &ptr, &slot, &cap)) return 3;
                snprintf(ptr, cap, "batch %d", i);
                if (sb_publish(pp, slot, strlen(ptr) + 1, i, NULL)) return 4;
                if ((n ? sb_release_consume(cp, &b, 1000) : sb_consume(cp, 1000, &b)) || b.eof) return 5;
                char want[32];
                snprintf(want, sizeof(want), "batch %d", i);
                if (strcmp(b.data, want) != 0) return 6;
                n++;
        }
        printf("moved %d batches\n", n);
        sb_client_free(c);
        sb_client_free(p);
        return 0;
}
'''


def test_exported_symbols_are_exactly_the_public_api():
    out = subprocess.run(["nm", "-D", "--defined-only", str(ROOT / "build" / "libshmbroker.so")],
                         capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1].split("@")[0] for line in out.splitlines() if " T " in line}
    sym = set(re.findall(r"^\s+(sb_\w+);", (ROOT / "client" / "libshmbroker.sym").read_text(), re.M))
    header = (ROOT / "include" / "shmbroker.h").read_text()
    declared = set(re.findall(r"\b(sb_\w+)\(", header)) - {"sb_reply_fn"}
    assert exported == sym, exported ^ sym
    assert exported == declared, exported ^ declared


def test_program_built_with_pkg_config_against_the_installed_library(daemon, tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "-s", "install", f"DESTDIR={dest}",
                    "PREFIX=/usr"], check=True, capture_output=True)
    env = dict(os.environ, PKG_CONFIG_PATH=str(dest / "usr/lib/pkgconfig"), PKG_CONFIG_SYSROOT_DIR=str(dest))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "shmbroker"], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert f"-I{dest}/usr/include" in flags and "-lshmbroker" in flags
    src = tmp_path / "mover.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "mover"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-o", str(exe), str(src), *flags], check=True)
    r = subprocess.run([str(exe), daemon.path], env=dict(os.environ, LD_LIBRARY_PATH=str(dest / "usr/lib")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip() == "moved 100 batches"
    ldd = subprocess.run(["ldd", str(exe)], env=dict(os.environ, LD_LIBRARY_PATH=str(dest / "usr/lib")),
                         capture_output=True, text=True).stdout
    assert str(dest / "usr/lib/libshmbroker.so.1") in ldd

"""The C examples run: the EXAMPLE program of libshmbroker(3), taken from the page as a
reader sees it, built with the page's own command against the installed library and run
against a daemon, prints what the page says it prints; examples/produce_consume.c, built by
`make`, moves its batches and checks them."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from sbtest import ROOT, wait_for

PAGE = ROOT / "docs" / "libshmbroker.3"


def example_section() -> list[str]:
    """The EXAMPLE section of libshmbroker(3) as `man` shows it, without its indentation.
    UTF-8 as on a reader's terminal: a '-' or a quote that groff would turn into a
    typographic character does not compile."""
    text = subprocess.run(["groff", "-man", "-Tutf8", "-rLL=200n", "-P-cbou", str(PAGE)], capture_output=True,
                          text=True, check=True).stdout
    m = re.search(r"^EXAMPLE\n(.*?)(?=^[A-Z][A-Z ]+\n)", text, re.S | re.M)
    assert m, "libshmbroker(3) has no EXAMPLE section"
    lines = m.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return [line[indent:] for line in lines]


def example_parts() -> tuple[str, list[str], list[str]]:
    """The program, the commands shown after it ("$ ..."), and the output shown after the
    last command."""
    lines = example_section()
    start = next(i for i, line in enumerate(lines) if line.startswith(("/*", "#include")))
    first_cmd = next(i for i, line in enumerate(lines) if line.startswith("$ "))
    end = max(i for i in range(start, first_cmd) if lines[i] == "}")
    commands, output = [], []
    for line in lines[first_cmd:]:
        if line.startswith("$ "):
            commands.append(line[2:])
            output = []
        elif not line.strip():
            if output:
                break
        else:
            output.append(line)
    return "\n".join(lines[start:end + 1]) + "\n", commands, output


def test_man_page_example_compiles_and_runs_as_shown(daemon, tmp_path):
    program, commands, shown = example_parts()
    assert commands[0].startswith("cc ") and "pkg-config --cflags --libs shmbroker" in commands[0], commands
    assert commands[1:] == ["./example"], commands
    # The library as installed, with its shmbroker.pc, found the way the page's command finds it.
    dest = tmp_path / "root"
    subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "-s", "install", f"DESTDIR={dest}",
                    "PREFIX=/usr"], check=True, capture_output=True)
    env = dict(os.environ, PKG_CONFIG_PATH=str(dest / "usr/lib/pkgconfig"), PKG_CONFIG_SYSROOT_DIR=str(dest),
               LD_LIBRARY_PATH=str(dest / "usr/lib"), SHMBROKER_SOCKET=daemon.path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "example.c").write_text(program)
    # As the page writes it, with the warnings on and made errors.
    build = subprocess.run(["sh", "-c", commands[0] + " -std=c11 -Wall -Wextra -Wpedantic -Werror"], cwd=work,
                           env=env, capture_output=True, text=True)
    assert build.returncode == 0, f"{commands[0]}:\n{build.stderr}\nthe program:\n{program}"
    run = subprocess.run(["./example"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == shown
    ldd = subprocess.run(["ldd", str(work / "example")], env=env, capture_output=True, text=True).stdout
    assert str(dest / "usr/lib/libshmbroker.so.1") in ldd


def test_man_page_example_says_why_it_fails(tmp_path):
    """Without a daemon the example fails as the page's fail() says: the system's words."""
    program, commands, _ = example_parts()
    (tmp_path / "example.c").write_text(program)
    exe = tmp_path / "example"
    subprocess.run(["cc", "-std=c11", f"-I{ROOT / 'include'}", "-o", str(exe), str(tmp_path / "example.c"),
                    str(ROOT / "build" / "libshmbroker.a"), *shlex.split(subprocess.run(
                        ["pkg-config", "--libs", "libcjson"], capture_output=True, text=True, check=True).stdout)],
                   check=True)
    r = subprocess.run([str(exe)], env=dict(os.environ, SHMBROKER_SOCKET=str(tmp_path / "none.sock")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr == "connect: No such file or directory\n"


def test_produce_consume_example(daemon):
    exe = ROOT / "build" / "produce_consume"
    assert exe.exists(), "`make` builds build/produce_consume"
    env = dict(os.environ, SHMBROKER_SOCKET=daemon.path)
    for args, want in (([], "64 batches of 32768 bytes from 2 workers"),
                       (["4", "1000"], "1000 batches of 32768 bytes from 4 workers"),
                       (["8", "3"], "3 batches of 32768 bytes from 8 workers")):
        r = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (args, r.stderr)
        assert want in r.stdout and "then the end of the stream" in r.stdout, r.stdout
    # Its pool was its own: gone with it (the daemon handles the hang-ups in its own time:
    # a worker's leave waits while another holds the pool's lock).
    admin = daemon.client("admin")
    wait_for(lambda: admin.ok("status")["pools"] == [], what="the example's pool to go")
    admin.close()


def test_produce_consume_example_refuses_bad_usage_and_says_why_it_fails(daemon_factory, tmp_path):
    exe = str(ROOT / "build" / "produce_consume")
    r = subprocess.run([exe, "0"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: produce_consume")
    r = subprocess.run([exe], env=dict(os.environ, SHMBROKER_SOCKET=str(tmp_path / "none.sock")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr == "trainer: connect: No such file or directory\n"
    # A refusal in the daemon's own words, with its code: a pool over the daemon's limit.
    small = daemon_factory('{"limits": {"max_bytes": "64KiB"}}')
    r = subprocess.run([exe], env=dict(os.environ, SHMBROKER_SOCKET=small.path), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("trainer: create: ") and "max_bytes" in r.stderr and r.stderr.endswith("(limit)\n"), \
        r.stderr

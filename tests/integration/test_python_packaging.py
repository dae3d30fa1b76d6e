"""The Python binding as a user installs and calls it: sizes with units read as the daemon
and shmbrokerctl read them, a platform wheel that carries the library and py.typed, the
install that works on Debian 12 (a virtual environment that sees Debian's numpy), and a
clone of the source tree beside a script that does not hide the package."""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import random
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import shmbroker
from shmbroker import _size
from sbtest import ROOT

PY = "/usr/bin/python3"


# --- sizes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def c_parse_size(tmp_path_factory):
    """sb_parse_size() of common/size.c (the daemon's and shmbrokerctl's reader), built on
    its own: it is not part of libshmbroker."""
    so = tmp_path_factory.mktemp("size") / "libsize.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-std=c11", "-D_GNU_SOURCE", f"-I{ROOT / 'include'}", "-o", str(so),
                    str(ROOT / "common" / "size.c")], check=True)
    lib = ctypes.CDLL(str(so))
    lib.sb_parse_size.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]
    lib.sb_parse_size.restype = ctypes.c_int

    def parse(text: str) -> tuple[int, int]:
        v = ctypes.c_uint64(0)
        rc = lib.sb_parse_size(text.encode(), ctypes.byref(v))
        return rc, v.value if rc == 0 else 0
    return parse


FIXED = ["0", "1", "4096", "16MiB", "16mib", "16MIB", "16 MiB", "16   MiB", "16\tMiB", " 16MiB", "16MiB ", "16 ",
         "+16", "-1", "1.5MiB", "0x10", "1e3", "", "MiB", "16M", "16MB", "16m", "1K", "1KB", "1kib", "1G", "1GB",
         "1GiB", "1T", "1TB", "1TiB", "16EiB", "16PiB", "1P", "1B", "1b", "12 b", "1 iB", "1KiBs", "1Ki",
         "18446744073709551615", "18446744073709551616", "99999999999999999999999", "99999999999999999999999x",
         "16777215TiB", "16777216TiB", "17179869183GiB", "17179869184GiB", "00012", "٣", "1\u212aiB", "1ＭiB",
         "1 KiB\n", "1\nKiB"]


def random_sizes(n: int) -> list[str]:
    rng = random.Random(14)
    parts = ["", "0", "7", "16", "1024", "18446744073709551615", "99999999999999999999", " ", "  ", "\t", "-", "+",
             ".", "K", "k", "KB", "KiB", "kib", "M", "MiB", "G", "GiB", "T", "TiB", "TB", "B", "b", "i", "x", "é"]
    return ["".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def test_sizes_are_read_as_the_daemon_and_shmbrokerctl_read_them(c_parse_size):
    for text in FIXED + random_sizes(3000):
        assert _size.parse(text) == c_parse_size(text), repr(text)
    assert _size.parse("16MiB") == (0, 16 << 20)
    assert _size.parse("16EiB") == (-errno.ERANGE, 0)          # a unit it knows, past 64 bits
    assert _size.parse("17179869184GiB") == (-errno.ERANGE, 0)


def test_size_errors_say_what_is_wrong():
    assert _size.size("512 KiB") == 512 << 10 and _size.size(7) == 7
    with pytest.raises(ValueError, match=r"slot_size: '16EiB' is too large \(more than 64 bits\)"):
        _size.size("16EiB", "slot_size")
    with pytest.raises(ValueError, match=r"'99999999999999999999' is too large"):
        _size.size("99999999999999999999")
    with pytest.raises(ValueError, match="too large"):
        _size.size(2**64)
    with pytest.raises(ValueError, match="negative"):
        _size.size(-1)
    with pytest.raises(ValueError, match="not a size"):
        _size.size("1\0MiB")
    for bad in (1.5, True, None, b"16MiB"):
        with pytest.raises(TypeError, match="a number of bytes or a string"):
            _size.size(bad)


def test_create_takes_sizes_with_units_as_the_daemon_does(daemon):
    admin = daemon.client("admin")
    with shmbroker.connect("producer", socket=daemon.path) as c:
        for i, text in enumerate(["16MiB", "512 KiB", "1mb", "4096", "3000 b"]):
            pool = c.create(f"units-{i}", slot_size=text, slots=2)
            # The same string straight to the daemon, over the protocol.
            by_daemon = admin.ok("create", pool=f"units-daemon-{i}", slot_size=text, slots=2)
            assert pool.slot_size == by_daemon["slot_size"] == _size.size(text)
        with pytest.raises(ValueError, match="slot_size: '16 EiB' is too large"):
            c.create("units-bad", slot_size="16 EiB", slots=2)
        assert admin.err("create", "bad_request", pool="units-bad", slot_size="16 EiB", slots=2)
        assert c.create("units-int", 1 << 20, 2).slot_size == 1 << 20
    admin.close()


def test_the_extension_is_the_one_for_this_library():
    """The source tree's package loads build/pyext's extension, bound to the library ctypes
    loaded (one copy of libshmbroker in the process)."""
    hot = shmbroker._lib.hot
    assert hot is not None and hot.__file__.startswith(str(ROOT / "build" / "pyext"))
    lib = shmbroker._lib.lib
    assert lib._name == str(ROOT / "build" / "libshmbroker.so")
    with pytest.raises(TypeError):
        hot.acquire(0)
    with pytest.raises(OverflowError):
        hot.next_batch(0, 1 << 40, 0)


# --- packaging ----------------------------------------------------------------------------

def build_wheel(source: Path, dest: Path) -> Path:
    """`pip wheel` of the package at ``source``, as pip builds it for `pip install`, offline."""
    subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
                    str(dest), str(source)], check=True, capture_output=True)
    wheels = list(dest.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_is_a_platform_wheel_with_the_library_the_extension_and_py_typed(tmp_path):
    assert (ROOT / "client" / "python" / "shmbroker" / "py.typed").exists()
    before = set((ROOT / "client" / "python").iterdir())
    wheel = build_wheel(ROOT / "client" / "python", tmp_path)
    # The extension is machine code for this Python: the wheel says which.
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    tag = f"{py}-{py}-linux_{platform.machine()}"
    assert wheel.name == f"shmbroker-{shmbroker.__version__}-{tag}.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"shmbroker-{shmbroker.__version__}.dist-info/WHEEL").decode()
    assert {"shmbroker/py.typed", "shmbroker/_lib/libshmbroker.so", "shmbroker/_size.py",
            "shmbroker/_hot" + sysconfig.get_config_var("EXT_SUFFIX")} <= names
    assert "Root-Is-Purelib: false" in meta and f"Tag: {tag}" in meta
    # The build wrote nothing beside setup.py (build/ and *.egg-info go to build/python/).
    assert set((ROOT / "client" / "python").iterdir()) == before


def test_wheel_without_a_built_library_is_pure(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "client" / "python", tree / "client" / "python",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "Makefile", tree / "Makefile")
    wheel = build_wheel(tree / "client" / "python", tmp_path / "dist")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert "shmbroker/py.typed" in names and not any("_lib/" in n or n.endswith(".so") for n in names)


SCRIPT = """
import numpy as np, shmbroker
with shmbroker.connect("producer") as p, shmbroker.connect("consumer") as c:
    pool = p.create("venv", slot_size="1MiB", slots=2)
    inbox = c.open("venv")
    pool.put(np.arange(5), meta={"from": "venv"})
    pool.end()
    for batch in inbox:
        print(batch.meta["from"], batch.array.tolist())
print(shmbroker.__file__)
print(shmbroker._lib.hot.__file__)
"""


def test_install_in_a_virtual_environment_that_sees_debians_numpy(daemon, tmp_path):
    """What the README says for Debian 12, whose pip refuses to install into the system's
    Python (externally-managed-environment): a venv with --system-site-packages (for
    python3-numpy), and pip install ./client/python there, offline."""
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "-q", str(ROOT / "client" / "python")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    (work / "script.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHMBROKER_LIBRARY")}
    r = subprocess.run([str(venv / "bin" / "python"), "script.py"], cwd=work, capture_output=True, text=True,
                       env=dict(env, SHMBROKER_SOCKET=daemon.path), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "venv [0, 1, 2, 3, 4]"
    assert lines[1].startswith(str(venv)), lines[1]
    assert lines[2].startswith(str(venv)) and "/shmbroker/_hot." in lines[2], lines[2]   # the extension went along


def test_a_clone_beside_the_script_does_not_hide_the_package(daemon, tmp_path):
    """A directory named shmbroker beside a script (this source tree cloned there) has no
    __init__.py: Python takes it for a namespace package only when no shmbroker package is
    found on the path, so the binding on PYTHONPATH (or installed) is the one imported."""
    clone = tmp_path / "shmbroker"
    (clone / "client" / "python").mkdir(parents=True)
    (clone / "README.md").write_text("a clone\n")
    (tmp_path / "script.py").write_text("import shmbroker\nprint(shmbroker.__file__, shmbroker.connect)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client" / "python"), SHMBROKER_SOCKET=daemon.path)
    r = subprocess.run([PY, "script.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(ROOT / "client" / "python" / "shmbroker" / "__init__.py"))

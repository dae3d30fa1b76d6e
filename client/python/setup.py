"""Packaging of the shmbroker Python binding.

Plain setuptools, no pyproject build requirements: `pip install ./client/python` builds
with the setuptools (and wheel) already on the machine (Debian's python3-setuptools and
python3-wheel) and never reaches a package index. A libshmbroker.so built in the source
tree (`make`) is shipped inside the package, so the installed binding works without `make
install`; the wheel is then a platform wheel (py3-none-linux_<machine>: the library is
machine code, but no Python ABI), and without it a pure one that loads the system's
libshmbroker.so.1. The extension module shmbroker._hot (the per-batch calls without ctypes)
is built where Python's headers are (python3-dev) and the tree's include/ is beside; the
wheel is then tagged for that Python (cp311-cp311-linux_<machine>). It is optional: where it
cannot be built, the package makes those calls through ctypes. The package carries py.typed:
its annotations are for type checkers.
What the build writes goes to build/python/ in the source tree, not beside this file. The
version is the Makefile's (shmbroker/_version.py reads it).
"""
import runpy
import shutil
from pathlib import Path

from setuptools import Distribution, Extension, setup
from setuptools.command.build_py import build_py

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:          # no wheel package: pip falls back to `setup.py install`
    bdist_wheel = None

HERE = Path(__file__).resolve().parent
TREE = HERE.parents[1]
BUILT = TREE / "build" / "libshmbroker.so"
BUILD_DIR = TREE / "build" / "python"
INCLUDE = TREE / "include"
# Relative to this file, as setuptools wants sources.
EXTENSIONS = [Extension("shmbroker._hot", ["shmbroker/_hot.c"], include_dirs=[str(INCLUDE)], optional=True)] \
    if (INCLUDE / "shmbroker.h").exists() else []
# By path: importing the package would load the library and numpy.
VERSION = runpy.run_path(str(HERE / "shmbroker" / "_version.py"))["from_makefile"](TREE / "Makefile")


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        if BUILT.exists():
            dest = Path(self.build_lib) / "shmbroker" / "_lib"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(BUILT, dest / "libshmbroker.so")


class WithLibrary(Distribution):
    """A distribution that carries machine code when it ships libshmbroker.so: bdist_wheel
    then makes a platform wheel, and installers treat it as such."""

    def has_ext_modules(self):
        return BUILT.exists() or bool(self.ext_modules)


cmdclass = {"build_py": BuildWithLibrary}
if bdist_wheel is not None:
    class PlatformWheel(bdist_wheel):
        """With the extension: tagged for the Python it was built for (bdist_wheel's own
        tag). With the library alone: for the platform alone (py3-none-linux_x86_64), since
        the library is called through ctypes and any Python 3 of that machine can use it."""

        def get_tag(self):
            python, abi, plat = super().get_tag()
            if self.root_is_pure or self.distribution.ext_modules:
                return python, abi, plat
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel

BUILD_DIR.mkdir(parents=True, exist_ok=True)
setup(
    name="shmbroker",
    version=VERSION,
    description="Zero-copy numpy batches between processes through shmbrokerd",
    packages=["shmbroker"],
    package_data={"shmbroker": ["py.typed"]},
    ext_modules=EXTENSIONS,
    zip_safe=False,
    python_requires=">=3.9",
    install_requires=["numpy"],
    distclass=WithLibrary,
    cmdclass=cmdclass,
    options={"build": {"build_base": str(BUILD_DIR)}, "egg_info": {"egg_base": str(BUILD_DIR)}},
)

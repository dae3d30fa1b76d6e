"""Packaging of the shmbroker Python binding.

Plain setuptools, no pyproject build requirements: `pip install ./client/python` builds
with the setuptools already on the machine (Debian's python3-setuptools) and never
reaches a package index. A libshmbroker.so built in the source tree (`make`) is shipped
inside the package, so the installed binding works without `make install`. The version is
the Makefile's (shmbroker/_version.py reads it).
"""
import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUILT = HERE.parents[1] / "build" / "libshmbroker.so"
# By path: importing the package would load the library and numpy.
VERSION = runpy.run_path(str(HERE / "shmbroker" / "_version.py"))["from_makefile"](HERE.parents[1] / "Makefile")


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        if BUILT.exists():
            dest = Path(self.build_lib) / "shmbroker" / "_lib"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(BUILT, dest / "libshmbroker.so")


setup(
    name="shmbroker",
    version=VERSION,
    description="Zero-copy numpy batches between processes through shmbrokerd",
    packages=["shmbroker"],
    python_requires=">=3.9",
    install_requires=["numpy"],
    cmdclass={"build_py": BuildWithLibrary},
)

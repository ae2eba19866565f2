"""Build hook: compile the hot pure-Python modules with Cython.

* ``orrange/matching/book.py``, typed by ``book.pxd`` (bounds and wraparound checks off: the
  module is written for that);
* ``orrange/alerts/index.py``, untyped, with Python's indexing semantics (about 25-30 % faster
  in ``bench/bench_alerts.py``).

The packages are listed here too, as three source directories: ``src/orrange`` (the library),
``actors/`` (the processes, installed as the top-level package ``actors``) and ``config/`` (the
default configuration files, installed as ``orrange.defaults``; ``orrange.settings.config_file``
falls back to them). Everything else is declared in pyproject.toml. Set ORRANGE_PURE_PYTHON=1
to skip the compilation (the pure-Python modules then run as they are, slower).
"""

import os

from setuptools import find_packages, setup

packages = [*find_packages("src"), "actors", "orrange.defaults"]
package_dir = {"": "src", "actors": "actors", "orrange.defaults": "config"}

ext_modules = []
if os.environ.get("ORRANGE_PURE_PYTHON") != "1":
    from Cython.Build import cythonize

    ext_modules = cythonize(
        ["src/orrange/matching/book.py"],
        compiler_directives={
            "language_level": "3",
            "annotation_typing": False,  # types come from book.pxd, not the annotations
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "binding": True,
        },
        quiet=True,
    )
    ext_modules += cythonize(
        ["src/orrange/alerts/index.py"],
        compiler_directives={"language_level": "3", "annotation_typing": False, "binding": True},
        quiet=True,
    )

setup(packages=packages, package_dir=package_dir, ext_modules=ext_modules)

"""Build hook: compile the matching core's hot module with Cython (typed by book.pxd).

Everything else is declared in pyproject.toml. Set ORRANGE_PURE_PYTHON=1 to skip the
compilation (the pure-Python module then runs as is, slower).
"""

import os

from setuptools import setup

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

setup(ext_modules=ext_modules)

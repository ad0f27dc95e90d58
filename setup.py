"""Build the optional C masker; everything else is in pyproject.toml.

``optional=True``: without a C compiler the build goes on and wscore uses its
pure-Python masker.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("wscore._speedups", ["wscore/_speedups.c"], optional=True)])

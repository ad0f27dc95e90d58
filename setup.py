"""Build the optional C helpers; everything else is in pyproject.toml.

``optional=True``: without a C compiler the build goes on, wscore uses its
pure-Python masker and the threaded transport plain ``socket.recv``.
"""

import sys

from setuptools import Extension, setup

extensions = [Extension("wscore._speedups", ["wscore/_speedups.c"], optional=True)]
if sys.platform.startswith("linux"):
    extensions.append(Extension("transports._gate", ["transports/_gate.c"], optional=True))

setup(ext_modules=extensions)

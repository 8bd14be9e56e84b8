"""Planets MLOps: the pure logic behind the KFP component suite.

Nothing in this package imports ``kfp``; each KFP component in ``components/`` is a thin
shell that unpacks artifacts, calls a function from here and writes outputs and metadata.
"""

__version__ = "0.1.0"

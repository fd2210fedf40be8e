"""trajlab: compare video models on clips of objects moving in 3D.

The package is the shared library of every service: configuration, the dataset,
the clip codec, the gRPC server bootstrap, clients and the CLI. It holds no
servers itself; those live in ``services/<name>/``.

Generated gRPC stubs live beside it under ``trajlab/<service>/v1/`` (built by
``make proto``, never edited, not in git).
"""

__version__ = "0.1.0"

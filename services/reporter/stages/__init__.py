"""The report's collection stages, in the order ``build.collect`` runs them.

Each stage is a function taking what it needs explicitly and returning a small dataclass
(a :class:`~services.reporter.stages.base.StageOutput`: the report-wide gaps and findings it
found, plus whatever the later stages use). Per-run figures are written into the runs'
:class:`~services.reporter.model.BranchReport`, the record every stage adds to.

- ``runs``: which runs the report covers, and their status, history and results;
- ``curves``: Prometheus's readiness and the training curves;
- ``clips``: the evaluation clips (the test split by default);
- ``served``: the served models scored on those clips through the encoder, and their latency;
- ``described``: sample trajectories through the describer;
- ``analysis``: the statistics on the served answers and the stress sets.
"""

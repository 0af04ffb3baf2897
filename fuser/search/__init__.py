"""The lossy low-rank search: calibration data through onnxruntime, the per-layer latency
table, rank allocation under a budget, the guard on the task metric, and the weight-only
low-rank passes (``lowrank-svd`` ...), which time their rewrites. It sits above the runtime
stage (it runs sessions through ``fuser.runtime``); the factorizations themselves, pure
algebra on the graph, are in ``fuser.passes.lowrank``.

Importing this package registers the weight-only passes by name.
"""

from fuser.search import weight_only  # noqa: F401  (importing registers the passes)

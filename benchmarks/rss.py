"""Peak memory of one optimization, measured in a process of its own.

    python -m benchmarks.rss CONTESTANT MODEL.onnx

Loads the model, reads the process's RSS high-water mark (VmHWM), runs the contestant
once on the loaded model, reads it again, and prints one JSON line with both in MB (and the
optimization's wall time). A fresh process per tool is the honest way: the high-water mark never
goes down, so tools measured one after another in one process would hide each other's peaks.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from benchmarks.peers import BY_NAME
from fuser import ir as graph_io


def _max_rss_mb() -> float:
    """This process's RSS high-water mark, MB. VmHWM belongs to the address space, which exec
    replaces; ``ru_maxrss`` survives exec, so a child of a large process would report the
    parent's size (the first full run showed 11.8 GB for every tool)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in BY_NAME:
        print(f"usage: python -m benchmarks.rss {{{','.join(BY_NAME)}}} MODEL.onnx",
              file=sys.stderr)
        return 2
    contestant = BY_NAME[args[0]]
    __import__(contestant.module)  # imported before the baseline: libraries are not the peak
    model = graph_io.load(args[1])
    loaded = _max_rss_mb()
    start = time.perf_counter()
    out = contestant.optimize(model)
    seconds = time.perf_counter() - start
    peak = _max_rss_mb()
    print(json.dumps({"contestant": contestant.name, "loaded_mb": round(loaded, 1),
                      "peak_mb": round(peak, 1), "extra_mb": round(peak - loaded, 1),
                      "seconds": round(seconds, 3), "nodes": len(out.graph.node)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PassManager: runs an ordered list of passes to a fixed point, with checks and dumps.

One *sweep* runs every pass once, in order. Sweeps repeat until one rewrites nothing (the
fixed point) or ``max_steps`` sweeps ran. Lossy passes run in the first sweep only: run again,
they would factorize their own factors. After a pass that changed the graph, dead nodes are
removed and the nodes re-sorted (``cleanup().toposort()``). With ``check_each`` the model is
exported and checked after every pass, so a broken graph is blamed on the pass that broke it.
A pass that rewrote nothing is not run again until some pass changes the graph (its record
is repeated for the sweep, with 0 seconds): the final sweep that proves the fixed point only
runs the passes that can see a changed graph.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from fuser import ir as graph_io
from fuser.errors import BadModelError, PassError
from fuser.passes.base import Pass
from fuser.report import PassRecord

logger = logging.getLogger(__name__)


class PassManager:
    """Run ``passes`` in order, sweep after sweep, until nothing changes.

    Args:
        passes: pass instances, in order.
        max_steps: at most this many sweeps.
        check_each: export and run the ONNX checker after every pass (on in tests).
        dump_dir: write the model after every pass that changed it, as
            ``<sweep>-<index>-<name>.onnx``.
        template: the original model, whose opsets and metadata exports keep.
        max_applications: stop after this many pass applications (bisection replays a
            prefix of a run: the passes are deterministic, so the prefix is the same).
    """

    def __init__(self, passes: Sequence[Pass], *, max_steps: int = 4, check_each: bool = False,
                 dump_dir: str | Path | None = None,
                 template: onnx.ModelProto | None = None,
                 max_applications: int | None = None) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.passes = list(passes)
        self.max_steps = max_steps
        self.check_each = check_each
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.template = template
        self.max_applications = max_applications

    def run(self, graph: gs.Graph) -> list[PassRecord]:
        """Apply the passes to ``graph`` in place; return one record per pass application."""
        records: list[PassRecord] = []
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
        version = 0  # counts pass applications that changed the graph
        last: dict[int, tuple[int, PassRecord]] = {}  # pass index -> (version after, record)
        for sweep in range(1, self.max_steps + 1):
            changed = False
            for index, pass_ in enumerate(self.passes):
                if self.max_applications is not None and len(records) >= self.max_applications:
                    return records
                if pass_.lossy and sweep > 1:
                    continue  # a lossy pass runs once: again, it would compress its own output
                previous = last.get(index)
                if previous is not None and previous[0] == version and not previous[1].rewrites:
                    # Nothing changed the graph since this pass last ran and rewrote nothing:
                    # passes are deterministic, so it would find the same (nothing) again.
                    seen = previous[1]
                    record = dataclasses.replace(seen, sweep=sweep, seconds=0.0,
                                                 skipped=dict(seen.skipped),
                                                 stats=dict(seen.stats), notes=list(seen.notes))
                    logger.info("%s: graph unchanged since its last run, not run again",
                                pass_.name)
                else:
                    record = self._apply(pass_, index, sweep, graph)
                version += record.rewrites > 0
                last[index] = (version, record)
                records.append(record)
                changed |= record.rewrites > 0
            if not changed:
                break
        else:
            if self.max_steps > 1:
                logger.warning("no fixed point after %d sweeps", self.max_steps)
        return records

    def _apply(self, pass_: Pass, index: int, sweep: int, graph: gs.Graph) -> PassRecord:
        nodes_before = len(graph.nodes)
        start = time.perf_counter()
        try:
            result = pass_(graph)
            if result.modified:
                graph.cleanup(remove_unused_graph_inputs=False).toposort()
        except Exception as exc:
            raise PassError(f"pass {pass_.name!r} failed in sweep {sweep} "
                            f"({self._before(index)}): {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - start
        logger.info("%s: %d rewrites, %d skipped, %.3fs", pass_.name, result.rewrites,
                    sum(result.skipped.values()), seconds)
        if self.check_each or (self.dump_dir is not None and result.modified):
            model = graph_io.to_model(graph, self.template)
            if self.check_each:
                try:
                    graph_io.check(model)
                except BadModelError as exc:
                    raise PassError(f"graph invalid after pass {pass_.name!r} in sweep {sweep} "
                                    f"({self._before(index)}): {exc}") from exc
            if self.dump_dir is not None and result.modified:
                graph_io.save(model, self.dump_dir / f"{sweep}-{index:02d}-{pass_.name}.onnx")
        for key in [k for k, v in result.stats.items() if not v]:
            del result.stats[key]
        return PassRecord(
            name=pass_.name, sweep=sweep, rewrites=result.rewrites,
            skipped=dict(sorted(result.skipped.items())),
            # The pass's own counter: weights it folded count their denormals into it when
            # they are computed, on export (see fuser.passes.exact._scaled).
            stats=result.stats,
            notes=list(result.notes), nodes_before=nodes_before, nodes_after=len(graph.nodes),
            seconds=seconds)

    def _before(self, index: int) -> str:
        earlier = [p.name for p in self.passes[:index]]
        return "after " + ", ".join(earlier) if earlier else "first pass"

"""Each layer's sensitivity: the task metric when that layer alone is rewritten (the rest of
the network dense), for every form and rank the search offers it (AIMET's greedy
compression-ratio selection measures the same thing on PyTorch models).

Per layer, the original network runs once up to the layer (``cut.prefix``) on the probe
samples, and one session holds the rest of the network after it (``cut.tail``); each option
then runs only its factor nodes on the layer's input and feeds their output to that tail.
The metric's drop and the relative output error against the original are the option's
``Effect``. Layers go slowest first, each with a share of the time left until the
``deadline`` in proportion to its dense latency (at least one option each while time
remains), its options interleaved across forms, nearest the budget first. A layer the
runs do not reach gets estimates from its fits alone (``estimate``); the other options not
measured are not offered (the report counts the options measured per layer).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING

import numpy as np
import onnx

from fuser.passes.lowrank.forms import Rank, form
from fuser.passes.lowrank.layers import Layer
from fuser.runtime import sessions as runtime
from fuser.runtime.runners import Progress
from fuser.search import cut
from fuser.search.build import factor_model, outputs, relative_error, samples_first
from fuser.search.calibrate import Feeds, tensors
from fuser.search.forms import Effect, Option
from fuser.search.metric import Metric, point_drop

if TYPE_CHECKING:
    from fuser.search.plan import Plan

#: Samples the sensitivity of each option is measured on (the first fitting samples): at
#: most this many, fewer when the options' runs would not fit in the search time.
PROBE_SAMPLES = 64
MIN_PROBE_SAMPLES = 16


@dataclasses.dataclass
class Probe:
    """The samples sensitivities are measured on, with the original's outputs on them."""

    batches: list[Feeds]
    labels: np.ndarray | None
    reference: dict[str, np.ndarray]


def measure(model: onnx.ModelProto, plan: Plan, options: list[list[Option]], probe: Probe,
            metric: Metric, reconstruction: str, deadline: float | None, line: Progress
            ) -> dict[tuple, Effect]:
    """``{option.key: Effect}`` for the options measured, the plan's layers in its order
    (the most promising first), each given a share of the time left by its dense time."""
    effects: dict[tuple, Effect] = {}
    layers, data, weights = plan.layers, plan.data, plan.dense_ms
    todo = [i for i in plan.order if options[i]]
    for position, i in enumerate(todo):
        now = time.perf_counter()
        if deadline is not None and now > deadline:
            break
        share = weights[i] / max(sum(weights[j] for j in todo[position:]), 1e-12)
        until = None if deadline is None else now + share * (deadline - now)
        runner = _LayerRunner(model, layers[i], probe)
        for option in interleaved(options[i]):
            if until is not None and time.perf_counter() > until and \
                    any(o.key in effects for o in options[i]):
                break
            line.show(f"low-rank: sensitivity of {layers[i].name} {option.method} rank "
                      f"{_rank_text(option.rank)} ({len(effects) + 1} measured)")
            factors = form(option.method).fit(layers[i], option.rank, data[i],
                                              reconstruction)
            new = runner.outputs(option.method, factors)
            effects[option.key] = Effect(point_drop(metric, probe.reference, new, probe.labels),
                                         relative_error(probe.reference, new), factors.energy)
    return effects


#: The share of the sensitivity time kept for the estimates of the options the network runs
#: do not reach (fits only: seconds where a network run takes minutes), and its cap.
ESTIMATE_SHARE, ESTIMATE_SECONDS = 0.1, 10.0


def estimate(plan: Plan, options: list[list[Option]], effects: dict[tuple, Effect],
             reconstruction: str, until: float | None) -> dict[tuple, Effect]:
    """``effects`` plus an estimate for the options of every layer the network runs did not
    reach at all, so that sensitivity reaches every candidate layer: the fit alone gives
    the layer's own response error, ``sqrt(1 - energy)`` (the share of its response
    energy, whitened where the fit is, that the factors lose), and the options measured
    give the gain from a layer's error to the output's: their largest ratio (1 when none
    was measured), so that an estimate is pessimistic and its layer moves after the
    measured ones. The drop of an estimate is unknown (0): the error bound, calibrated on
    measured options only, and the guard's ladder judge it. A layer with a measured option
    keeps only those. Slowest layers first, until ``until``."""
    ratios = [e.error / math.sqrt(1 - e.energy) for e in effects.values()
              if e.measured and e.energy < 1 - 1e-9]
    gain = max(ratios, default=1.0)
    out = dict(effects)
    for i in plan.order:
        if any(o.key in effects for o in options[i]):
            continue
        for option in options[i]:
            if until is not None and time.perf_counter() > until:
                return out
            factors = form(option.method).fit(plan.layers[i], option.rank, plan.data[i],
                                              reconstruction)
            out[option.key] = Effect(0.0, gain * math.sqrt(max(1 - factors.energy, 0.0)),
                                     factors.energy, measured=False)
    return out


def interleaved(options: list[Option]) -> list[Option]:
    """Options in the order offered within each form (nearest the budget first), the forms
    taking turns."""
    by_form: dict[str, list[Option]] = {}
    for option in options:
        by_form.setdefault(option.method, []).append(option)
    turns = max(len(v) for v in by_form.values())
    return [v[t] for t in range(turns) for v in by_form.values() if t < len(v)]


class _LayerRunner:
    """The probe run through one rewritten layer and the original network after it."""

    def __init__(self, model: onnx.ModelProto, layer: Layer, probe: Probe) -> None:
        self.layer, self.probe = layer, probe
        self.key = layer.node.outputs[0].name
        self.source = layer.source
        self.side = _upstream(model, self.key, probe.batches)
        dtypes = {k: v.dtype for k, v in self.side[0].items()}
        dtypes[self.key] = np.dtype(layer.node.inputs[1].dtype)
        after = cut.tail(model, self.key, dtypes)
        self.tail = runtime.session(after, level="all") if after.graph.node else None

    def outputs(self, method: str, factors) -> dict[str, np.ndarray]:
        """Every output on the probe with the layer rewritten (the others the original's)."""
        sess = runtime.session(factor_model(self.layer, method, factors), level="all")
        collected: dict[str, list[np.ndarray]] = {}
        for feeds in self.side:
            value = sess.run([self.key], {self.source: feeds[self.source]})[0]
            computed = {self.key: value}
            if self.tail is not None:
                inputs = {i.name: computed.get(i.name, feeds.get(i.name))
                          for i in self.tail.get_inputs()}
                names = [o.name for o in self.tail.get_outputs()]
                computed.update(zip(names, self.tail.run(names, inputs), strict=True))
            for name, array in computed.items():
                if name in self.probe.reference:
                    collected.setdefault(name, []).append(array)
        sizes = [len(next(iter(b.values()))) for b in self.probe.batches]
        new = dict(self.probe.reference)
        new.update({n: samples_first(v, sizes) for n, v in collected.items()})
        return new


def _rank_text(rank: Rank) -> str:
    return "x".join(map(str, rank)) if isinstance(rank, tuple) else str(rank)


def _upstream(model: onnx.ModelProto, key: str, batches: list[Feeds]) -> list[dict]:
    """The tensors the part from ``key``'s node on reads, on every probe batch."""
    return list(tensors(model, cut.upstream_inputs(model, key), batches))


def probe_samples(options: list[list[Option]], seconds: float, per_sample: float) -> int:
    """Probe samples, ``PROBE_SAMPLES`` at most and ``MIN_PROBE_SAMPLES`` at least, such that
    every option's run (half the network on average) fits in ``seconds``."""
    runs = max(sum(len(o) for o in options), 1)
    fitting = int(seconds / max(runs * 0.5 * per_sample, 1e-9))
    return max(MIN_PROBE_SAMPLES, min(PROBE_SAMPLES, fitting))


def probe(model: onnx.ModelProto, fit: list[Feeds], labels: np.ndarray | None,
           count: int) -> Probe:
    """The first ``count`` fitting samples (fewer if fit has fewer), in their batches, and
    the original's outputs on them."""
    batches, taken = [], 0
    for feeds in fit:
        size = len(next(iter(feeds.values())))
        if taken >= count:
            break
        keep = min(size, count - taken)
        batches.append(feeds if keep == size else {k: v[:keep] for k, v in feeds.items()})
        taken += keep
    return Probe(batches, None if labels is None else labels[:taken],
                             outputs(model, batches, level="all"))

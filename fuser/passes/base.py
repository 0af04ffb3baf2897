"""The pass protocol: a class with a name, a lossy flag and ``run(graph) -> PassResult``;
and ``Rule``, the pass that rewrites one pattern node by node, whose driver owns the loop.

Passes mutate the onnx-graphsurgeon graph in place. They only rewire edges and create
constants; the manager removes what became dead (``cleanup().toposort()``) after any pass that
changed something. A pass never raises to reject a candidate: it counts a skip reason.

Most passes are rules: they declare the ``ops`` they look at and write two methods,
``match(node, context)`` (what the rewrite needs, or ``Skip(reason)``) and
``rewrite(found, context)`` (change the graph, return a one-line note). docs/writing-a-pass.md
walks through one.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, ClassVar

import onnx_graphsurgeon as gs

from fuser.passes.match import Names, NotCandidate, Skip


@dataclasses.dataclass
class PassResult:
    """What one run of a pass did.

    Attributes:
        rewrites: how many rewrites the pass made (0 means the graph is unchanged).
        skipped: candidates left alone, counted by reason (each reason names the node).
        stats: other counts worth reporting (``"denormals flushed"``, ``"shared weight cloned"``).
        notes: one line per rewrite, naming the nodes involved (for the report).
    """

    rewrites: int = 0
    skipped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    stats: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def modified(self) -> bool:
        return self.rewrites > 0

    def rewrote(self, note: str) -> None:
        """Count one rewrite and remember what it was."""
        self.rewrites += 1
        self.notes.append(note)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1


class Pass:
    """Base class of every pass: set ``name`` (kebab-case) and implement ``run``.

    Options are keyword arguments of ``__init__``; each maps to a CLI flag.
    """

    name: ClassVar[str]
    lossy: ClassVar[bool] = False

    def run(self, graph: gs.Graph) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, graph: gs.Graph) -> PassResult:
        result = self.run(graph)
        if not isinstance(result, PassResult):
            raise TypeError(
                f"pass {self.name!r} returned {type(result).__name__}, not PassResult")
        if result.rewrites < 0:
            raise ValueError(f"pass {self.name!r} returned a negative rewrite count")
        return result

    @classmethod
    def summary(cls) -> str:
        """The first line of the pass's docstring (shown by ``onnx-fuser passes``)."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"



@dataclasses.dataclass
class Context:
    """What a rule's ``match`` and ``rewrite`` see of one run: the graph, the run's result
    (for stats such as denormals flushed) and fresh tensor names (made on first use: listing
    a large graph's names costs time a rule that finds nothing should not pay)."""

    graph: gs.Graph
    result: PassResult
    _names: Names | None = None

    @property
    def names(self) -> Names:
        if self._names is None:
            self._names = Names(self.graph)
        return self._names


#: Domains whose ops rules rewrite (a custom domain's "Conv" is not ONNX's).
STANDARD_DOMAINS = ("", "ai.onnx", None)


class Rule(Pass):
    """A pass that rewrites one pattern, node by node.

    Subclasses set ``name`` and ``ops`` and implement ``match`` and ``rewrite``. The driver
    visits, in graph order, the nodes of the standard domain whose op is in ``ops`` (the list
    is taken before the first rewrite; a node an earlier rewrite detached is passed over).
    ``match`` raises ``Skip(reason)`` for a candidate left alone (the reason, naming the node,
    is counted) or ``NotCandidate`` for a node that is not the pattern at all (not counted);
    otherwise it returns what ``rewrite`` needs. ``rewrite`` changes the graph and returns the
    note for the report (None when it wrote its own notes); it may still raise ``Skip``, but
    only before it changed anything.
    """

    ops: ClassVar[tuple[str, ...]]
    #: Visit the candidates last first (a chain then folds in one run, from its end).
    reverse: ClassVar[bool] = False

    def run(self, graph: gs.Graph) -> PassResult:
        context = Context(graph, PassResult())
        self._visit(context)
        self.finish(context)
        return context.result

    def _visit(self, context: Context) -> None:
        """The candidates of ``context.graph``, then of its subgraphs (If branches, Loop and
        Scan bodies), each with that subgraph's outputs as the graph outputs and fresh names
        unique across every scope. A subgraph reads outer tensors by name; onnx-graphsurgeon
        links them to the same tensor objects, so an outer tensor's consumers include the
        subgraph's nodes and every sole-consumer check counts them."""
        graph = context.graph
        nodes = reversed(graph.nodes) if self.reverse else graph.nodes
        for node in [n for n in nodes if n.op in self.ops]:
            if node.domain not in STANDARD_DOMAINS or not (node.inputs or node.outputs):
                continue
            try:
                note = self.rewrite(self.match(node, context), context)
            except NotCandidate:
                continue
            except Skip as reason:
                context.result.skip(str(reason))
                continue
            if note is not None:
                context.result.rewrote(note)
        for subgraph in list(graph.subgraphs()):
            self._visit(Context(subgraph, context.result, context.names))

    def match(self, node: gs.Node, context: Context) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def rewrite(self, found: Any, context: Context) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def finish(self, context: Context) -> None:
        """Called once after the loop (a summary note, say); nothing by default."""


REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its name."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"duplicate pass name {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls

"""The pass protocol: a class with a name, a lossy flag and ``run(graph) -> PassResult``.

Passes mutate the onnx-graphsurgeon graph in place. They only rewire edges and create
constants; the manager removes what became dead (``cleanup().toposort()``) after any pass that
changed something. A pass never raises to reject a candidate: it counts a skip reason.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import ClassVar

import onnx_graphsurgeon as gs


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


REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its name."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"duplicate pass name {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls

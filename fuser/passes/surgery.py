"""Graph surgery the rewrites share: detaching a node, giving its outputs to another, and
bypassing a node whose output equals its input, with graph outputs kept by name."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from fuser.passes.match import Skip, describe, producer


def detach(node: gs.Node) -> None:
    """Disconnect a node so that cleanup removes it and it confuses no consumer count."""
    node.inputs.clear()
    node.outputs.clear()


def take_outputs(new_producer: gs.Node, old: gs.Node) -> None:
    """Make ``new_producer`` compute what ``old`` computed (its output tensors keep their
    names, so graph outputs stay intact), then detach ``old``."""
    new_producer.outputs = [old.outputs[0]]
    detach(old)


def bypass(node: gs.Node, graph: gs.Graph) -> None:
    """Remove a node whose first output equals its first input (Identity, Dropout, ...).

    Consumers of the output read the input instead. When the output is a graph output, the
    input's producer is made to compute the output tensor directly (keeping the graph's
    output name); that needs an input that is computed, not a graph input/output.
    """
    x, y = node.inputs[0], node.outputs[0]
    if y in graph.outputs:
        source = producer(x)
        if source is None or x in graph.outputs or x in graph.inputs:
            raise Skip(f"{describe(node)} joins a graph input/constant or output to a graph "
                       "output")
        consumers = [c for c in x.outputs if c is not node]
        detach(node)
        for consumer in consumers:
            _replace(consumer.inputs, x, y)
        _replace(source.outputs, x, y)
        return
    for consumer in list(y.outputs):
        _replace(consumer.inputs, y, x)
    detach(node)


def _replace(tensors: list[gs.Tensor], old: gs.Tensor, new: gs.Tensor) -> None:
    """Swap ``old`` for ``new`` in a node's inputs or outputs, one item at a time: gs keeps
    tensor <-> node links in sync on ``tensors[i] = ...`` but not on slice assignment."""
    for i, tensor in enumerate(tensors):
        if tensor is old:
            tensors[i] = new

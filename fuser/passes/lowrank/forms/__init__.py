"""The low-rank forms, one per module, and their registry.

| form     | layer               | nodes (Conv weights M x C x kh x kw)              | searched |
|----------|---------------------|---------------------------------------------------|----------|
| channel  | Conv                | W'[R,C,kh,kw] -> P[N,R,1,1]                       | yes      |
| input    | Conv, k x k > 1 x 1 | P[R,C,1,1] -> W'[N,R,kh,kw]                       | yes      |
| tucker2  | Conv, k x k > 1 x 1 | [R3,C,1,1] -> [R4,R3,kh,kw] -> [N,R4,1,1]         | yes      |
| spatial  | Conv, kh, kw > 1    | V[R,C,kh,1] -> H[N,R,1,kw]                        | yes      |
| cp       | Conv, k x k > 1 x 1 | [R,C,1,1] -> dw[R,1,kh,1] -> dw[R,1,1,kw] -> ... | no (1)   |
| svd      | Gemm, MatMul        | two Gemm / MatMul of r x K and N x r              | yes      |

(1) CP has no data-aware fit yet: the weight-only pass ``lowrank-cp`` offers it. Each
module's docstring has the algebra and the fits; ``base.Form`` is the protocol. Every
form at full rank reproduces the layer (tests/passes/test_lowrank_exact.py).
"""

from __future__ import annotations

from fuser.passes.lowrank.forms.base import Form, LayerData, Rank, aligned
from fuser.passes.lowrank.forms.channel import Channel
from fuser.passes.lowrank.forms.cp import CP
from fuser.passes.lowrank.forms.input import Input
from fuser.passes.lowrank.forms.spatial import Spatial
from fuser.passes.lowrank.forms.svd import Svd
from fuser.passes.lowrank.forms.tucker2 import Tucker2

#: Every form by name, in the order the search offers them.
FORMS: dict[str, Form] = {f.name: f for f in (Channel(), Input(), Tucker2(), Spatial(),
                                              Svd(), CP())}


def form(name: str) -> Form:
    """The form called ``name`` (KeyError for an unknown one)."""
    return FORMS[name]


def searched(layer) -> list[Form]:
    """The forms the data-aware search offers for ``layer``. A 1 x 1 Conv gets the channel
    form only: every form of it is one rank-r product of two 1 x 1 convs."""
    return [f for f in FORMS.values() if f.searched and f.applies(layer)]


__all__ = ["FORMS", "Form", "LayerData", "Rank", "aligned", "form", "searched"]

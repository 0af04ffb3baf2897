"""The result records (issue 14, typed results): frozen, ``from_dict(to_dict())`` round-trips
(generated records and real reports), read by key as the dicts of earlier versions were, and
``fuser.report`` imports nothing of fuser's stages."""

from __future__ import annotations

import ast
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuser
from fuser.report import (
    BenchResult,
    Compression,
    Culprit,
    LayerChoice,
    ModelStats,
    OutputComparison,
    PassRecord,
    ProviderChoice,
    Record,
    Report,
    SessionInfo,
    Stats,
    TimingResult,
    ValidationResult,
)
from fuser.report.records import field_types
from tests.helpers import make_model
from tests.test_culprit import MODEL, pipeline_with_perturb

RECORDS = [BenchResult, Compression, Culprit, LayerChoice, ModelStats, OutputComparison,
           PassRecord, ProviderChoice, Report, SessionInfo, Stats, TimingResult,
           ValidationResult]

_SCALARS = {str: st.text(max_size=8), int: st.integers(-2**40, 2**40), bool: st.booleans(),
            float: st.floats(allow_nan=True), dict: st.dictionaries(st.text(max_size=4),
                                                                    st.text(max_size=4))}


def strategy(hint: Any) -> st.SearchStrategy:
    """Values of a field's type: records with every field set, small containers."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else strategy(a) for a in args))
    if isinstance(hint, type) and issubclass(hint, Record):
        return records(hint)
    if origin is list:
        return st.lists(strategy(args[0]), max_size=2)
    if origin is tuple:
        return st.tuples(*(strategy(a) for a in args))
    if origin is dict:
        return st.dictionaries(strategy(args[0]), strategy(args[1]), max_size=2)
    return _SCALARS[hint]


def records(cls: type[Record]) -> st.SearchStrategy:
    hints = field_types(cls)
    fields = {f.name: strategy(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_from_dict_inverts_to_dict(cls, data):
    record = data.draw(records(cls))
    plain = record.to_dict()
    assert cls.from_dict(plain) == record
    # The JSON form holds plain types only (NaN aside, which JSON writes as NaN).
    assert json.loads(json.dumps(plain)).keys() == plain.keys()


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_records_are_frozen(cls):
    assert cls.__dataclass_params__.frozen


@pytest.fixture(scope="module")
def reports():
    rng = np.random.default_rng(0)
    model = make_model(MODEL, rng, W=(8, 4, 3, 3), s=(8,), b0=(8,), mean=(8,), var=(8,),
                       k=(8, 1, 1), W2=(8, 8, 1, 1))
    runs = {"exact": {}, "bisect": {"passes": pipeline_with_perturb()},
            "rollback": {"passes": pipeline_with_perturb(), "on_failure": "rollback"},
            "unvalidated": {"validate": False, "input_shapes": {"x": (2, 4, 6, 6)}}}
    found = {}
    for name, kwargs in runs.items():
        passes = kwargs.pop("passes", None)
        found[name] = fuser.optimize(model, passes, **kwargs)[1]
    return found


@pytest.mark.parametrize("name", ["exact", "bisect", "rollback", "unvalidated"])
def test_real_reports_round_trip_through_json(reports, name):
    report = reports[name]
    copy = Report.from_dict(report.to_dict())
    assert copy == report
    assert copy.to_text() == report.to_text() and copy.to_markdown() == report.to_markdown()
    # Through JSON text (its keys sorted, so the times print in another order):
    assert Report.from_dict(json.loads(report.to_json())).to_json() == report.to_json()


def test_a_report_reads_as_the_dicts_of_earlier_versions(reports):
    report = reports["bisect"]
    (culprit,) = report.culprits
    assert isinstance(culprit, Culprit) and culprit["name"] == culprit.name == "perturb"
    assert culprit.get("missing", 7) == 7 and "sweep" in culprit
    with pytest.raises(KeyError):
        culprit["missing"]
    with pytest.raises(TypeError):
        iter(culprit)
    data = report.to_dict()
    assert Report(**{**{f.name: getattr(report, f.name) for f in dataclasses.fields(report)},
                     "culprits": data["culprits"]}) == report  # JSON forms are accepted


def test_a_missing_accuracy_bound_leaves_the_key_out():
    layer = LayerChoice("c", "Conv", "dense", 0, 10, 10, 1.0, 1.0, 1.0)
    unbounded = Compression("macs=0.5", [layer], 10, 10, None, 0.0)
    assert "passed" not in unbounded.to_dict() and "passed" not in unbounded
    bounded = dataclasses.replace(unbounded, passed=False)
    assert bounded.to_dict()["passed"] is False and bounded["layers"][0]["method"] == "dense"


def test_mutating_a_report_is_refused(reports):
    with pytest.raises(dataclasses.FrozenInstanceError):
        reports["exact"].notes = []


def test_report_is_a_leaf_package():
    """fuser.report imports nothing of fuser but fuser.errors and itself, anywhere in a
    module (function-level imports included)."""
    root = Path(fuser.__file__).parent / "report"
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name == "fuser" or name.startswith("fuser."):
                    assert name == "fuser.errors" or name.startswith("fuser.report"), \
                        f"{path.name} imports {name}"


def test_long_names_are_shortened_in_tables_and_repeated_reasons_grouped():
    """Issue 29: tf2onnx layer names of ~360 characters filled the table, and 26 lines of
    "not considered: weight ... is shared" the report; the JSON keeps every name whole."""
    from fuser.report.tables import NAME_WIDTH, grouped, short_name

    long = "model/" + "stage_3/" * 40 + "conv2d_7/Conv2D;model/stage_3/bn/FusedBatchNormV3"
    short = short_name(long)
    assert len(short) == NAME_WIDTH and short.startswith("…") and short.endswith("conv2d_7/Conv2D")
    assert short_name("conv1") == "conv1"
    reasons = [f"weight 'w{i}' of Conv '{long}{i}' is shared" for i in range(26)]
    reasons.append("Conv 'c': input size unknown (give --input-shape)")
    lines = grouped(reasons)
    assert len(lines) == 2
    assert lines[0].startswith("26x weight '…' of Conv '…' is shared (the first: weight 'w0'")
    assert len(lines[0]) < 160
    assert lines[1] == reasons[-1]

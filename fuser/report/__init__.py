"""Typed results and their renderers: what a run of fuser found, as frozen dataclasses with
JSON (``to_dict``/``from_dict``), text and markdown forms.

A leaf package: it imports nothing of fuser but ``fuser.errors``; the stages that compute the
results (``fuser.runtime``, ``fuser.passes``, ``fuser.api``) import their classes from here.

- ``records``: the ``Record`` base (JSON forms driven by the fields' type hints)
- ``results``: ``Report``, ``PassRecord``, ``ModelStats``, ``Culprit``
- ``validation``: ``ValidationResult``, ``OutputComparison``
- ``timing``: ``BenchResult``, ``TimingResult``, ``SessionInfo``, ``Stats``, ``ProviderChoice``
- ``speed``: ``SpeedCheck``, ``SpeedRatio`` (the delivered model against the original)
- ``compression``: ``Compression``, ``LayerChoice``, ``Rung``
- ``text``, ``markdown``, ``tables``: the renderers
- ``schema``: writes docs/report-schema.md from the classes (``schema`` = 2)
"""

from __future__ import annotations

from fuser.report.compression import Compression, LayerChoice, Rung
from fuser.report.records import Record
from fuser.report.results import SCHEMA_VERSION, Culprit, ModelStats, PassRecord, Report
from fuser.report.speed import SpeedCheck, SpeedRatio
from fuser.report.text import lowrank_text, placement_text, timings_text
from fuser.report.timing import BenchResult, ProviderChoice, SessionInfo, Stats, TimingResult
from fuser.report.validation import OutputComparison, ValidationResult

__all__ = [
    "SCHEMA_VERSION",
    "BenchResult",
    "Compression",
    "Culprit",
    "LayerChoice",
    "Rung",
    "ModelStats",
    "OutputComparison",
    "PassRecord",
    "ProviderChoice",
    "Record",
    "Report",
    "SessionInfo",
    "SpeedCheck",
    "SpeedRatio",
    "Stats",
    "TimingResult",
    "ValidationResult",
    "lowrank_text",
    "placement_text",
    "timings_text",
]

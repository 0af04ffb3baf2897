"""docs/report-schema.md is what ``python -m fuser.report.schema`` writes from the result
classes: a field added, renamed or documented differently shows up here until the page is
written again."""

from __future__ import annotations

from pathlib import Path

from fuser.report import Report, schema

PAGE = Path(__file__).resolve().parents[1] / "docs" / "report-schema.md"


def test_the_committed_schema_page_is_the_generators_output():
    assert PAGE.read_text(encoding="utf-8") == schema.render(), (
        "docs/report-schema.md is stale: run python -m fuser.report.schema "
        "docs/report-schema.md")


def test_every_key_of_a_report_has_a_row():
    rows = {line.split("`")[1] for line in schema.section(Report).splitlines()
            if line.startswith("| `")}
    keys = {"model", "pipeline", "passes", "before", "after", "seconds", "fuser_version",
            "libraries", "validation", "culprits", "rolled_back", "timings", "speed", "lowrank",
            "notes", "schema", "summary"}
    assert rows == keys


def test_every_field_is_documented():
    for cls in schema.records():
        for field in cls.__dataclass_fields__.values():
            assert field.metadata.get("doc"), f"{cls.__name__}.{field.name} has no doc"

"""The base of every result: a frozen dataclass whose JSON form follows its fields.

``to_dict`` turns a record into plain JSON types (nested records by their own ``to_dict``,
tuples into lists); ``from_dict`` is its inverse, driven by the fields' type hints, so that
``X.from_dict(x.to_dict()) == x``. Keys ``from_dict`` does not know are ignored (a newer
writer may add keys without a schema bump) and missing keys take the field's default.

Each field documents itself with :func:`doc` (its meaning, and the type as the schema writes
it when the hint alone would say less); ``fuser.report.schema`` renders those into
docs/report-schema.md.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


def doc(meaning: str, *, default: Any = dataclasses.MISSING,
        default_factory: Any = dataclasses.MISSING, schema_type: str | None = None,
        omit_none: bool = False) -> Any:
    """A dataclass field documented for the schema.

    ``schema_type`` replaces the type the schema derives from the hint (``{reason: count}``
    says more than ``{str: int}``); ``omit_none`` leaves the key out of ``to_dict`` while the
    value is None (a key that appears only in some runs).
    """
    metadata = {"doc": meaning, "schema_type": schema_type, "omit_none": omit_none}
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata=metadata)


class Record:
    """Mixin of the result dataclasses: ``to_dict``/``from_dict`` and read access by key.

    ``record["key"]`` and ``record.get("key")`` read the value ``to_dict()`` holds under that
    key: results that earlier versions returned as dicts (a culprit, the low-rank summary,
    the timings) are read the same way.
    """

    __iter__ = None  # not a mapping to iterate: ``record["key"]`` reads one field

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: plain types only, one key per field (see ``doc(omit_none=...)``)."""
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is None and field.metadata.get("omit_none"):
                continue
            data[field.name] = plain(value)
        return data

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record ``to_dict`` wrote (unknown keys ignored, missing ones defaulted)."""
        hints = field_types(cls)
        values = {field.name: typed(hints[field.name], data[field.name])
                  for field in dataclasses.fields(cls)  # type: ignore[arg-type]
                  if field.init and field.name in data}
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return plain(getattr(self, key))

    def __contains__(self, key: object) -> bool:
        fields = {f.name: f for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        field = fields.get(key) if isinstance(key, str) else None
        return field is not None and not (field.metadata.get("omit_none")
                                           and getattr(self, field.name) is None)

    def get(self, key: str, default: Any = None) -> Any:
        """``record[key]``, or ``default`` when ``to_dict()`` has no such key."""
        return self[key] if key in self else default


def plain(value: Any) -> Any:
    """``value`` in plain JSON types: records by ``to_dict``, mappings as dicts, sequences
    (lists, tuples) as lists; anything else as it is."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def typed(hint: Any, value: Any) -> Any:
    """The inverse of ``plain`` for a value of type ``hint``: records from their dicts,
    tuples from lists, element by element; a value already of a record type stays as is."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        return typed(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return value if isinstance(value, hint) else hint.from_dict(value)
    if origin is list:
        return [typed(args[0], item) for item in value]
    if origin is tuple:
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(typed(kind, item) for kind, item in zip(kinds, value, strict=True))
    if origin is dict:
        return {key: typed(args[1], item) for key, item in value.items()}
    return value


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hints of a record's fields (the modules use postponed annotations)."""
    return typing.get_type_hints(cls)

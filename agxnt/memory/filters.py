"""Metadata filters: Chroma's ``where`` syntax, checked up front so a bad filter is a clear 400."""

from __future__ import annotations

from typing import Any

from agxnt.errors import AgentError

Scalar = str | int | float | bool

_COMPARISONS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}
_LISTS = {"$in", "$nin"}
_LOGICAL = {"$and", "$or"}


def _fail(message: str, field: str) -> AgentError:
    return AgentError(
        f"invalid filter: {message}. Use {{'key': value}}, {{'key': {{'$gt': 3}}}}, "
        f"{{'key': {{'$in': [..]}}}} or {{'$and'|'$or': [filters]}}",
        field=field,
    )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def normalize_filter(where: dict[str, Any] | None, field: str = "filter") -> dict[str, Any] | None:
    """Validate a filter and put it in the shape Chroma accepts (one condition per dict, ``$and`` of many)."""
    if where is None or where == {}:
        return None
    if not isinstance(where, dict):
        raise _fail("a filter must be an object", field)
    clauses = [_clause(key, value, field) for key, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _clause(key: str, value: Any, field: str) -> dict[str, Any]:
    if key in _LOGICAL:
        if not isinstance(value, list) or not value:
            raise _fail(f"{key} needs a non-empty list of filters", field)
        parts = []
        for item in value:
            if not isinstance(item, dict):
                raise _fail(f"{key} items must be objects", field)
            normalized = normalize_filter(item, field)
            if normalized:
                parts.append(normalized)
        if not parts:
            raise _fail(f"{key} needs at least one non-empty filter", field)
        return parts[0] if len(parts) == 1 else {key: parts}
    if key.startswith("$"):
        raise _fail(f"unknown operator {key!r} at the top level", field)
    if _is_scalar(value):
        return {key: {"$eq": value}}
    if isinstance(value, dict):
        if len(value) != 1:
            raise _fail(f"condition on {key!r} must have exactly one operator", field)
        ((op, operand),) = value.items()
        if op in _COMPARISONS:
            if not _is_scalar(operand):
                raise _fail(f"{op} on {key!r} needs a string, number or boolean", field)
            if op in {"$gt", "$gte", "$lt", "$lte"} and isinstance(operand, (str, bool)):
                raise _fail(f"{op} on {key!r} needs a number", field)
        elif op in _LISTS:
            if not isinstance(operand, list) or not operand or not all(_is_scalar(v) for v in operand):
                raise _fail(f"{op} on {key!r} needs a non-empty list of values", field)
        else:
            raise _fail(f"unknown operator {op!r} on {key!r}", field)
        return {key: {op: operand}}
    raise _fail(f"value for {key!r} must be a string, number, boolean or an operator object", field)

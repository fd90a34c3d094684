"""SCIM filters (RFC 7644 §3.4.2.2) -> SQLAlchemy Core conditions.

scim2-models parses the filter; this module walks its syntax tree and builds the condition from
an allow-list of attributes, each bound to a column. Values only ever become bound parameters
(``LIKE`` patterns escaped), so no part of a filter reaches the SQL text. An attribute outside
the allow-list, an operator that does not fit the attribute's type, or a value of the wrong
type is refused with ``invalidFilter``.

Case: attributes with ``caseExact`` false compare lower-cased on both sides; case-exact ones
compare as binary strings on MySQL/MariaDB (whose default collations ignore case).

Every comparison is false, never NULL, on a missing value, so ``not`` inverts it as SCIM
means (a user without a title matches ``not (title eq "x")``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path.expressions import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import String, and_, exists, false, func, not_, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

Kind = Literal["string", "boolean", "datetime"]
MAX_FILTER_LENGTH = 2000
MAX_NODES = 50


class case_exact(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """The column compared byte for byte: MySQL/MariaDB collations ignore case by default."""

    type = String()
    name = "case_exact"
    inherit_cache = True


@compiles(case_exact)
def _case_exact_default(element: case_exact, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(case_exact, "mysql")
def _case_exact_mysql(element: case_exact, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS BINARY)"


@dataclass(frozen=True, slots=True)
class Scalar:
    column: ColumnElement[Any] | InstrumentedAttribute[Any]
    kind: Kind = "string"
    case_exact: bool = False


@dataclass(frozen=True, slots=True)
class MultiValued:
    """A multi-valued attribute kept as rows of another table; ``link`` correlates a row with
    the resource being filtered."""

    link: Callable[[], ColumnElement[bool]]
    sub: Mapping[str, Scalar]
    default_sub: str = "value"


Attribute = Scalar | MultiValued


@dataclass(frozen=True, slots=True)
class FilterSchema:
    """What a resource type lets clients filter on. Keys are lower-case attribute paths
    (``username``, ``name.givenname``, ``meta.lastmodified``, ``emails``)."""

    attributes: Mapping[str, Attribute]
    # Schema URNs a client may prefix a path with (lower-case).
    urns: frozenset[str]


def parse(text: str) -> FilterNode:
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilterException(detail=f"a filter has at most {MAX_FILTER_LENGTH} characters")
    try:
        node: FilterNode = ScimFilter(text).ast
    except InvalidFilterException:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidFilterException(detail=f"cannot parse the filter: {exc}") from None
    if _size(node) > MAX_NODES:
        raise InvalidFilterException(detail=f"a filter has at most {MAX_NODES} terms")
    return node


def translate(text: str, schema: FilterSchema) -> ColumnElement[bool]:
    """The condition ``text`` describes over ``schema``'s columns."""
    return _Translator(schema).node(parse(text), schema.attributes)


def _size(node: FilterNode) -> int:
    if isinstance(node, LogicalExpr):
        return 1 + sum(_size(term) for term in node.terms)
    if isinstance(node, Not):
        return 1 + _size(node.expr)
    if isinstance(node, ValuePath):
        return 1 + _size(node.val_filter)
    return 1


def _refuse(detail: str) -> InvalidFilterException:
    return InvalidFilterException(detail=detail)


class _Translator:
    def __init__(self, schema: FilterSchema) -> None:
        self._schema = schema

    def node(self, node: FilterNode, scope: Mapping[str, Attribute]) -> ColumnElement[bool]:
        if isinstance(node, LogicalExpr):
            terms = [self.node(term, scope) for term in node.terms]
            return and_(*terms) if node.op is LogicalOperator.and_ else or_(*terms)
        if isinstance(node, Not):
            return not_(self.node(node.expr, scope))
        if isinstance(node, ValuePath):
            return self._value_path(node, scope)
        if isinstance(node, Comparison):
            return self._attribute(node.attr_path, scope, node)
        if isinstance(node, Present):
            return self._attribute(node.attr_path, scope, node)
        raise _refuse(f"unsupported filter expression {type(node).__name__}")

    def _name(self, path: AttrPath, scope: Mapping[str, Attribute]) -> tuple[str, str | None]:
        if path.uri is not None and (
            scope is not self._schema.attributes or path.uri.lower() not in self._schema.urns
        ):
            raise _refuse(f"unknown schema {path.uri!r} in the filter")
        sub = path.sub_attr.lower() if path.sub_attr else None
        return path.attr.lower(), sub

    def _lookup(self, name: str, scope: Mapping[str, Attribute]) -> Attribute:
        found = scope.get(name)
        if found is None:
            raise _refuse(f"filtering on {name!r} is not supported")
        return found

    def _attribute(
        self, path: AttrPath, scope: Mapping[str, Attribute], node: Comparison | Present
    ) -> ColumnElement[bool]:
        name, sub = self._name(path, scope)
        full = f"{name}.{sub}" if sub else name
        direct = scope.get(full)
        if isinstance(direct, Scalar):
            return _condition(direct, node, full)
        attribute = self._lookup(name, scope)
        if isinstance(attribute, Scalar):
            raise _refuse(f"{name!r} has no sub-attribute {sub!r}")
        scalar = self._lookup(sub or attribute.default_sub, attribute.sub)
        if not isinstance(scalar, Scalar):
            raise _refuse(f"filtering on {full!r} is not supported")
        return exists(select(1).where(attribute.link(), _condition(scalar, node, full)))

    def _value_path(self, node: ValuePath, scope: Mapping[str, Attribute]) -> ColumnElement[bool]:
        name, sub = self._name(node.attr_path, scope)
        attribute = self._lookup(name, scope)
        if not isinstance(attribute, MultiValued) or sub is not None or node.sub_attr:
            raise _refuse(f"{name!r} is not a multi-valued attribute one can filter inside")
        inner = self.node(node.val_filter, attribute.sub)
        return exists(select(1).where(attribute.link(), inner))


def _condition(attribute: Scalar, node: Comparison | Present, name: str) -> ColumnElement[bool]:
    column: ColumnElement[Any] = (
        attribute.column.expression
        if isinstance(attribute.column, InstrumentedAttribute)
        else attribute.column
    )
    if isinstance(node, Present):
        present = column.is_not(None)
        return and_(present, column != "") if attribute.kind == "string" else present
    op = node.op
    if node.value is None:
        # RFC 7644 has no null literal semantics beyond "absent": eq null = not present.
        if op is CompareOperator.eq:
            return column.is_(None)
        if op is CompareOperator.ne:
            return column.is_not(None)
        raise _refuse(f"{op.value} null is meaningless")
    if attribute.kind == "boolean":
        return _boolean(column, op, node.value, name)
    if attribute.kind == "datetime":
        return _datetime(column, op, node.value, name)
    return _string(attribute, op, node.value, name)


def _boolean(
    column: ColumnElement[Any], op: CompareOperator, value: Any, name: str
) -> ColumnElement[bool]:
    if not isinstance(value, bool):
        raise _refuse(f"{name!r} is a boolean: compare it with true or false")
    if op is CompareOperator.eq:
        return and_(column.is_not(None), column == value)
    if op is CompareOperator.ne:
        return or_(column.is_(None), column != value)
    raise _refuse(f"{op.value} does not apply to the boolean {name!r}")


def _datetime(
    column: ColumnElement[Any], op: CompareOperator, value: Any, name: str
) -> ColumnElement[bool]:
    if not isinstance(value, str):
        raise _refuse(f"{name!r} is a date-time: compare it with a quoted xsd:dateTime")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _refuse(f"{value!r} is not an xsd:dateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    compare = {
        CompareOperator.eq: column.__eq__,
        CompareOperator.gt: column.__gt__,
        CompareOperator.ge: column.__ge__,
        CompareOperator.lt: column.__lt__,
        CompareOperator.le: column.__le__,
    }
    if op is CompareOperator.ne:
        return or_(column.is_(None), column != moment)
    if op not in compare:
        raise _refuse(f"{op.value} does not apply to the date-time {name!r}")
    return and_(column.is_not(None), compare[op](moment))


def _string(attribute: Scalar, op: CompareOperator, value: Any, name: str) -> ColumnElement[bool]:
    if isinstance(value, bool) or not isinstance(value, str):
        raise _refuse(f"{name!r} is a string: compare it with a quoted value")
    raw: ColumnElement[Any] = (
        attribute.column.expression
        if isinstance(attribute.column, InstrumentedAttribute)
        else attribute.column
    )
    if attribute.case_exact:
        column: ColumnElement[Any] = case_exact(raw)
        operand = value
    else:
        column = func.lower(raw)
        operand = value.lower()
    present = raw.is_not(None)
    if op is CompareOperator.ne:
        return or_(raw.is_(None), column != operand)
    condition: ColumnElement[bool]
    match op:
        case CompareOperator.eq:
            condition = column == operand
        case CompareOperator.co:
            condition = column.contains(operand, autoescape=True)
        case CompareOperator.sw:
            condition = column.startswith(operand, autoescape=True)
        case CompareOperator.ew:
            condition = column.endswith(operand, autoescape=True)
        case CompareOperator.gt:
            condition = column > operand
        case CompareOperator.ge:
            condition = column >= operand
        case CompareOperator.lt:
            condition = column < operand
        case CompareOperator.le:
            condition = column <= operand
        case _:
            raise _refuse(f"unsupported operator {op.value}")
    return and_(present, condition)


def never() -> ColumnElement[bool]:
    return false()

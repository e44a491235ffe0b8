"""Avro schema-resolution compatibility: can data written with one schema be read with another?

Implements the resolution rules of the Avro specification ("Schema Resolution"):

* records match by full name, or when the reader lists the writer's full name among its
  aliases; a reader field absent from the writer (by name or field alias) needs a default;
  writer fields the reader lacks are skipped;
* enums match by name; every writer symbol must be a reader symbol unless the reader enum
  has a default;
* fixed types match by name and size;
* arrays and maps match when their items / values do;
* unions: each writer branch must match some reader branch (the first that matches is
  used); a non-union writer must match a branch of a reader union, and each branch of a
  writer union must be readable by a non-union reader;
* promotions: int to long, float or double; long to float or double; float to double;
  string to bytes and bytes to string;
* logical types are ignored: resolution works on the underlying type.

Problems are returned as sentences that start with the path of the offending field
(``ContactOpened.customer.cpf_index``), never raised, so a check lists everything at once.
The catalogue-wide check (:func:`check_catalogue`) is what CI runs on ``schemas/avro``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema

from .codec import Schema, schema_object

if TYPE_CHECKING:
    from .catalogue import SchemaCatalogue

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types it may be read as, besides itself
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_PRIVATE_KEYS = frozenset({"__fastavro_parsed", "__named_schemas"})


def can_read(reader: Schema, writer: Schema) -> list[str]:
    """Problems that stop data written with ``writer`` from being read with ``reader``.

    An empty list means compatible. Both schemas may be JSON text, loaded JSON or
    fastavro-parsed; each is parsed on its own, so each must be self-contained.
    """
    return _Resolution(reader, writer).problems


def check_full_transitive(versions: list[Schema], labels: list[str] | None = None) -> list[str]:
    """FULL_TRANSITIVE: every version reads every other version's data, both ways.

    ``labels`` name the versions in messages (default ``#1``, ``#2``, ... by position).
    """
    if labels is None:
        labels = [f"#{i + 1}" for i in range(len(versions))]
    if len(labels) != len(versions):
        raise ValueError(f"{len(labels)} labels for {len(versions)} versions")
    problems = []
    for i, reader in enumerate(versions):
        for j, writer in enumerate(versions):
            if i != j:
                for problem in can_read(reader, writer):
                    problems.append(f"{labels[i]} cannot read {labels[j]}: {problem}")
    return problems


def check_catalogue(catalogue: SchemaCatalogue, meta_schema: Schema | None = None) -> list[str]:
    """Everything that must hold for a schema folder to be released.

    * versions of each event type are numbered 1..N without gaps (a missing file would
      make its fingerprint unreadable);
    * all versions of each event type are FULL_TRANSITIVE compatible;
    * the ``meta`` field of each current version equals ``meta_schema`` (default: the
      folder's ``Meta.avsc``), docs aside.
    """
    problems: list[str] = []
    if meta_schema is None:
        meta_path = Path(catalogue.root) / "Meta.avsc"
        try:
            meta_schema = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"cannot read the canonical Meta record {meta_path}: {exc}")
    meta = None
    if meta_schema is not None:
        meta_names: dict[str, Any] = {}
        meta = _structure(parse_schema(schema_object(meta_schema), meta_names), meta_names)
    for event_type in catalogue.event_types():
        versions = catalogue.versions(event_type)
        numbers = [v.version for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(
                f"{event_type}: versions are {numbers}, expected 1..{len(numbers)} without gaps "
                "(a published schema file must never be removed)"
            )
        problems.extend(
            check_full_transitive(
                [v.schema for v in versions], [f"{event_type} v{v.version}" for v in versions]
            )
        )
        if meta is not None:
            current = catalogue.current(event_type)
            names: dict[str, Any] = {}
            parse_schema(current.schema, names)
            ours = _structure(current.schema["fields"][0]["type"], names)
            for difference in _differences(meta, ours, "meta"):
                problems.append(
                    f"{event_type} v{current.version}: meta differs from Meta.avsc: {difference}"
                )
    return problems


class _Resolution:
    """One reader/writer comparison; collects problems in ``self.problems``."""

    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_names: dict[str, Any] = {}
        self.writer_names: dict[str, Any] = {}
        reader_parsed = parse_schema(schema_object(reader), self.reader_names)
        writer_parsed = parse_schema(schema_object(writer), self.writer_names)
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()  # recursive types: compare each pair once
        r = self._deref(reader_parsed, self.reader_names)
        w = self._deref(writer_parsed, self.writer_names)
        root = r if isinstance(r, dict) and "name" in r else w
        path = _short(root["name"]) if isinstance(root, dict) and "name" in root else "<root>"
        self._check(r, w, path)

    @staticmethod
    def _deref(schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return names[schema]
        return schema

    def _check(self, reader: Any, writer: Any, path: str) -> None:
        reader = self._deref(reader, self.reader_names)
        writer = self._deref(writer, self.writer_names)
        if _kind(reader) in ("record", "error") and _kind(writer) in ("record", "error"):
            key = (reader["name"], writer["name"])
            if key in self._seen:
                return
            self._seen.add(key)
        if isinstance(writer, list):
            # Each branch the writer may have used must be readable on its own.
            for branch in writer:
                branch = self._deref(branch, self.writer_names)
                self._check_branch(reader, branch, path, f"the writer's union branch {_describe(branch)}")
            return
        self._check_branch(reader, writer, path, f"writer type {_describe(writer)}")

    def _check_branch(self, reader: Any, writer: Any, path: str, what: str) -> None:
        """``writer`` is not a union; ``what`` names it in problems."""
        if isinstance(reader, list):
            chosen = self._first_match(reader, writer)
            if chosen is None:
                self.problems.append(f"{path}: {what} matches no branch of the reader's union {_describe(reader)}")
            else:
                self._check(chosen, writer, path)
            return
        if not _matches(reader, writer):
            self.problems.append(f"{path}: {what} cannot be read as {_describe(reader)}" + _mismatch_hint(reader, writer))
            return
        kind = _kind(reader)
        if kind in ("record", "error"):
            self._check_record(reader, writer, path)
        elif kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                self.problems.append(
                    f"{path}: writer symbols {missing} are not in the reader's enum "
                    f"{reader['name']} and it has no default symbol"
                )
        elif kind == "array":
            self._check(reader["items"], writer["items"], f"{path}[]")
        elif kind == "map":
            self._check(reader["values"], writer["values"], f"{path}{{}}")

    def _first_match(self, union: list[Any], writer: Any) -> Any:
        for branch in union:
            branch = self._deref(branch, self.reader_names)
            if _matches(branch, writer):
                return branch
        return None

    def _check_record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            field_path = f"{path}.{field['name']}"
            source = writer_fields.get(field["name"])
            if source is None:
                source = next(
                    (writer_fields[a] for a in field.get("aliases", ()) if a in writer_fields), None
                )
            if source is not None:
                self._check(field["type"], source["type"], field_path)
            elif "default" not in field:
                self.problems.append(
                    f"{field_path}: the reader has this field, the writer does not, "
                    "and the reader gives it no default"
                )


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _full_aliases(schema: dict[str, Any]) -> set[str]:
    namespace = schema["name"].rpartition(".")[0]
    return {
        a if "." in a or not namespace else f"{namespace}.{a}" for a in schema.get("aliases", ())
    }


def _matches(reader: Any, writer: Any) -> bool:
    """The spec's "schemas match" test, without recursing into children."""
    r, w = _kind(reader), _kind(writer)
    if r == "error":
        r = "record"
    if w == "error":
        w = "record"
    if r != w:
        return r in PROMOTIONS.get(w, ())
    if r in NAMED:
        if reader["name"] != writer["name"] and writer["name"] not in _full_aliases(reader):
            return False
        return r != "fixed" or reader["size"] == writer["size"]
    return True


def _mismatch_hint(reader: Any, writer: Any) -> str:
    if _kind(reader) == _kind(writer) == "fixed" and reader["name"] == writer["name"]:
        return f" (sizes differ: writer {writer['size']}, reader {reader['size']})"
    if _kind(reader) == _kind(writer) and _kind(reader) in NAMED:
        return " (names differ and the reader has no alias for the writer's name)"
    return ""


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if kind == "union":
        return "[" + ", ".join(_describe(s) for s in schema) + "]"
    if isinstance(schema, str):
        return schema if schema in PRIMITIVES else f"named type {schema}"
    if kind in NAMED:
        return f"{kind} {schema['name']}"
    if kind == "array":
        return f"array<{_describe(schema['items'])}>"
    if kind == "map":
        return f"map<{_describe(schema['values'])}>"
    logical = schema.get("logicalType")
    return f"{kind} ({logical})" if logical else kind


def _short(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def _structure(schema: Any, names: dict[str, Any]) -> Any:
    """A comparable form of a parsed schema: named references expanded, docs dropped.

    ``names`` maps full names to the parsed named types that references may point to.
    """

    def strip(node: Any, expanding: frozenset[str]) -> Any:
        if isinstance(node, str) and node in names and node not in expanding:
            return strip(names[node], expanding | {node})
        if isinstance(node, list):
            return [strip(n, expanding) for n in node]
        if isinstance(node, dict):
            if node.keys() == {"type"} and isinstance(node["type"], str) and node["type"] in PRIMITIVES:
                return node["type"]  # {"type": "string"} is "string"
            if isinstance(node.get("type"), str) and node["type"] in NAMED:
                expanding = expanding | {node["name"]}
            return {
                k: strip(v, expanding) if k in ("type", "fields", "items", "values") else v
                for k, v in node.items()
                if k != "doc" and k not in _PRIVATE_KEYS
            }
        return node

    return strip(schema, frozenset())


def _differences(expected: Any, actual: Any, path: str) -> list[str]:
    """Human-readable differences between two :func:`_structure` results."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(expected.keys() | actual.keys()):
            if key not in actual:
                out.append(f"{path}: {key!r} is missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{path}: unexpected {key!r} = {actual[key]!r}")
            elif key == "fields":
                out.extend(_field_differences(expected[key], actual[key], path))
            else:
                out.extend(_differences(expected[key], actual[key], f"{path}.<{key}>"))
        return out
    if expected != actual:
        return [f"{path}: expected {expected!r}, found {actual!r}"]
    return []


def _field_differences(expected: list[Any], actual: list[Any], path: str) -> list[str]:
    expected_by_name = {f["name"]: f for f in expected}
    actual_by_name = {f["name"]: f for f in actual}
    out = [f"{path}.{n}: field is missing" for n in expected_by_name if n not in actual_by_name]
    out += [f"{path}.{n}: unexpected field" for n in actual_by_name if n not in expected_by_name]
    for name, field in expected_by_name.items():
        if name in actual_by_name:
            out.extend(_differences(field, actual_by_name[name], f"{path}.{name}"))
    common = [n for n in expected_by_name if n in actual_by_name]
    if not out and common != [n for n in actual_by_name if n in expected_by_name]:
        out.append(f"{path}: fields are in a different order")
    return out

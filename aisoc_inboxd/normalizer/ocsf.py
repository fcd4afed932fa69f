"""
Our view of OCSF 1.8.0, built on the compiled schema shipped in the PyPI package C{ocsf-json-schema}.

Templates are checked against it when they load (does a target path exist, which enum values are
allowed) and tests and template tooling check emitted events with L{validate_event}. The schema is
read once, lazily, and shared; nothing here runs on the per-event hot path of the daemon.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping

SCHEMA_VERSION = "1.8.0"

# timestamp_t is epoch *milliseconds*. Below 1e11 (March 1973 as ms) a value is almost surely epoch
# seconds; from 1e14 (year 5138 as ms) on it is almost surely micro- or nanoseconds.
TIMESTAMP_MIN_MS = 100_000_000_000
TIMESTAMP_MAX_MS = 100_000_000_000_000

# Primitive JSON type of each OCSF base type; other types name their base type in the dictionary.
_BASE_JSON_TYPES = {
    "boolean_t": "boolean",
    "integer_t": "integer",
    "long_t": "integer",
    "float_t": "number",
    "string_t": "string",
    "json_t": "any",
}
_SEGMENT_INDEX = re.compile(r"\[(?:\d*|\*)\]$")
_SCHEMA_PATH_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Attribute:
    """
    One OCSF attribute as a template or a checker needs it, with its type already resolved.
    """

    name: str
    type: str
    json_type: str  # "string", "integer", "number", "boolean", "object" or "any" (free-form)
    is_array: bool = False
    object_type: str | None = None
    enum: Mapping[int | str, str] = field(default_factory=dict)  # value -> caption
    sibling: str | None = None
    regex: re.Pattern[str] | None = None
    max_len: int | None = None
    value_range: tuple[int, int] | None = None

    @property
    def free_form(self) -> bool:
        """
        Whether anything may live below this attribute (C{json_t} values, the C{object} object).
        """
        return self.json_type == "any" or self.object_type == "object"


FREE_FORM = Attribute(name="*", type="json_t", json_type="any")


@dataclass(frozen=True)
class OcsfClass:
    """
    The facts about an event class that a template needs to stamp its events.
    """

    uid: int
    name: str
    caption: str
    category_uid: int
    category_name: str
    activities: Mapping[int, str]  # activity_id -> activity_name
    profiles: frozenset[str]
    deprecated: bool


class OcsfSchema:
    """
    Lookups over one compiled OCSF schema (the C{ocsf-json-schema} export format).
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.version: str = raw["version"]
        self._raw = raw
        self._objects: Mapping[str, Any] = raw["objects"]
        self._types: Mapping[str, Any] = raw["dictionary"]["types"]["attributes"]
        self.profiles: frozenset[str] = frozenset(raw.get("profiles", {}))
        self._classes: dict[int, tuple[OcsfClass, Mapping[str, Any]]] = {}
        for definition in raw["classes"].values():
            cls = self._make_class(definition)
            self._classes[cls.uid] = (cls, definition["attributes"])
        self._validators: dict[tuple[int, tuple[str, ...]], Any] = {}

    # ----------------------------------------------------------------- lookups

    def find_class(self, class_uid: int) -> OcsfClass | None:
        """
        The class with this uid, or C{None} when OCSF 1.8.0 has no such class.
        """
        entry = self._classes.get(class_uid) if _is_int(class_uid) else None
        return entry[0] if entry else None

    def attribute_chain(self, class_uid: int, dotted_path: str,
                        profiles: Iterable[str] = ()) -> tuple[Attribute, ...] | None:
        """
        The attribute for each segment of C{dotted_path} in the class, or C{None} if it is no path.

        Array indexes (C{evidences[0]}, C{files[]}, C{cwes[*]}) are ignored: arrays traverse transparently.
        Segments below a free-form attribute (C{unmapped}, C{json_t}) are L{FREE_FORM}.
        Attributes of profiles not listed in C{profiles} do not exist.
        """
        entry = self._classes.get(class_uid) if _is_int(class_uid) else None
        if entry is None or not dotted_path:
            return None
        selected = frozenset(profiles)
        attributes: Mapping[str, Any] | None = entry[1]
        chain: list[Attribute] = []
        for segment in dotted_path.split("."):
            name = _SEGMENT_INDEX.sub("", segment)
            if not name:
                return None
            if chain and chain[-1].free_form:
                chain.append(FREE_FORM)
                continue
            definition = attributes.get(name) if attributes is not None else None
            if definition is None or not self._in_profiles(definition, selected):
                return None
            attribute = self._make_attribute(name, definition)
            chain.append(attribute)
            attributes = (self._objects[attribute.object_type]["attributes"]
                          if attribute.object_type and not attribute.free_form else None)
        return tuple(chain)

    def attribute(self, class_uid: int, dotted_path: str,
                  profiles: Iterable[str] = ()) -> Attribute | None:
        """
        The attribute a dotted path ends at, or C{None} if the path does not exist in the class.
        """
        chain = self.attribute_chain(class_uid, dotted_path, profiles)
        return chain[-1] if chain else None

    def path_exists(self, class_uid: int, dotted_path: str, profiles: Iterable[str] = ()) -> bool:
        """
        Whether C{dotted_path} is an attribute path of the class (see L{attribute_chain}).
        """
        return self.attribute_chain(class_uid, dotted_path, profiles) is not None

    def enum_captions(self, class_uid: int, dotted_path: str,
                      profiles: Iterable[str] = ()) -> Mapping[int | str, str]:
        """
        Value -> caption of an enumerated attribute (C{severity_id}, C{finding_info.analytic.type_id});
        empty when the attribute is not enumerated or does not exist.
        """
        attribute = self.attribute(class_uid, dotted_path, profiles)
        return attribute.enum if attribute else MappingProxyType({})

    # -------------------------------------------------------------- validation

    def validate_event(self, event: Any) -> list[str]:
        """
        Every reason why C{event} is not a valid OCSF 1.8.0 event; empty when it is valid.

        JSON Schema (generated per class and profile set by C{ocsf-json-schema}, applied by
        C{jsonschema} with integers that must really be integers) checks required attributes,
        types, enums, formats, unknown attributes and constraints. The rest is checked here:
        class lookup, category and type_uid consistency, C{metadata.version}, declared profiles,
        epoch-millisecond plausibility of every C{timestamp_t}, and C{observables[].name} paths.
        """
        if not isinstance(event, dict):
            return [f"(event): expected a JSON object, got {type(event).__name__}"]
        if "class_uid" not in event:
            return ["class_uid: required attribute missing"]
        class_uid = event["class_uid"]
        if not _is_int(class_uid):
            return [f"class_uid: must be an integer, got {class_uid!r}"]
        entry = self._classes.get(class_uid)
        if entry is None:
            return [f"class_uid: unknown class {class_uid} in OCSF {self.version}"]
        cls, attributes = entry
        errors: list[str] = []
        profiles = self._declared_profiles(event, errors)
        inconsistent = dict(self._consistency_errors(cls, event))
        errors.extend(inconsistent.values())
        errors.extend(self._schema_errors(cls, profiles, event, frozenset(inconsistent)))
        errors.extend(self._timestamp_errors(event, attributes, ""))
        errors.extend(self._observable_errors(cls, event, profiles))
        return list(dict.fromkeys(errors))

    def _declared_profiles(self, event: Mapping[str, Any], errors: list[str]) -> tuple[str, ...]:
        metadata = event.get("metadata")
        declared = metadata.get("profiles") if isinstance(metadata, dict) else None
        if not isinstance(declared, list):
            return ()
        known: set[str] = set()
        for index, name in enumerate(declared):
            if isinstance(name, str) and name not in self.profiles:
                errors.append(f"metadata.profiles[{index}]: unknown profile {name!r}")
            elif isinstance(name, str):
                known.add(name)
        return tuple(sorted(known))

    def _consistency_errors(self, cls: OcsfClass,
                            event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        category_uid = event.get("category_uid")
        if _is_int(category_uid) and category_uid != cls.category_uid:
            yield "category_uid", (f"category_uid: {category_uid} is not the category of class {cls.uid} "
                   f"{cls.caption} (expected {cls.category_uid} {cls.category_name})")
        activity_id, type_uid = event.get("activity_id"), event.get("type_uid")
        if _is_int(activity_id) and _is_int(type_uid) and type_uid != cls.uid * 100 + activity_id:
            yield "type_uid", (f"type_uid: {type_uid} is not class_uid * 100 + activity_id "
                   f"({cls.uid * 100 + activity_id})")
        metadata = event.get("metadata")
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if isinstance(version, str) and version != self.version:
            yield "metadata.version", f"metadata.version: {version!r} is not the OCSF version we emit ({self.version!r})"

    def _schema_errors(self, cls: OcsfClass, profiles: tuple[str, ...], event: Mapping[str, Any],
                       inconsistent: frozenset[str]) -> Iterator[str]:
        errors = list(self._validator(cls, profiles).iter_errors(event))
        # a value of the wrong type also fails its enum/pattern/range: report the type only
        mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        for error in errors:
            where = tuple(error.absolute_path)
            if error.validator != "type" and where in mistyped:
                continue
            if error.validator in ("const", "enum") and ".".join(map(str, where)) in inconsistent:
                continue  # already reported by the consistency check, with the expected value
            yield from self._describe(cls, profiles, error)

    def _describe(self, cls: OcsfClass, profiles: tuple[str, ...], error: Any) -> Iterator[str]:
        path = _instance_path(error.absolute_path)
        shown = path or "(event)"
        if error.validator == "required":
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    yield f"{_join(path, name)}: required attribute missing"
        elif error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            for name in sorted(k for k in error.instance if k not in known):
                yield f"{_join(path, name)}: unknown attribute"
        elif error.validator == "anyOf" and isinstance(error.instance, dict):
            names = [branch["required"][0] for branch in error.validator_value]
            yield f"{shown}: needs at least one of {', '.join(names)}"
        elif error.validator in ("pattern", "maxLength"):
            attribute = self.attribute(cls.uid, _SCHEMA_PATH_INDEX.sub("", path), profiles)
            type_name = attribute.type if attribute else "value"
            yield f"{shown}: {error.instance!r} is not a valid {type_name}"
        else:
            yield f"{shown}: {error.message}"

    def _timestamp_errors(self, value: Mapping[str, Any], attributes: Mapping[str, Any],
                          path: str) -> Iterator[str]:
        for name, item in value.items():
            definition = attributes.get(name)
            if definition is None:
                continue
            item_path = _join(path, name)
            if definition["type"] == "timestamp_t" and _is_int(item):
                if item < TIMESTAMP_MIN_MS:
                    yield f"{item_path}: {item} looks like epoch seconds, not milliseconds"
                elif item >= TIMESTAMP_MAX_MS:
                    yield f"{item_path}: {item} looks like micro- or nanoseconds, not milliseconds"
            object_type = definition.get("object_type")
            if definition["type"] != "object_t" or object_type == "object":
                continue
            children = self._objects[object_type]["attributes"]
            if isinstance(item, dict):
                yield from self._timestamp_errors(item, children, item_path)
            elif isinstance(item, list):
                for index, element in enumerate(item):
                    if isinstance(element, dict):
                        yield from self._timestamp_errors(element, children, f"{item_path}[{index}]")

    def _observable_errors(self, cls: OcsfClass, event: Mapping[str, Any],
                           profiles: tuple[str, ...]) -> Iterator[str]:
        observables = event.get("observables")
        if not isinstance(observables, list):
            return
        for index, observable in enumerate(observables):
            name = observable.get("name") if isinstance(observable, dict) else None
            if isinstance(name, str) and not self.path_exists(cls.uid, name, profiles):
                yield (f"observables[{index}].name: {name!r} is not an attribute path of class "
                       f"{cls.uid} {cls.caption}")

    def _validator(self, cls: OcsfClass, profiles: tuple[str, ...]) -> Any:
        key = (cls.uid, profiles)
        if key not in self._validators:
            self._validators[key] = _json_schema_validator(self._raw, cls.name, profiles)
        return self._validators[key]

    # ---------------------------------------------------------------- building

    def _make_class(self, definition: Mapping[str, Any]) -> OcsfClass:
        attributes = definition["attributes"]
        activities = {int(value): meta["caption"]
                      for value, meta in attributes["activity_id"].get("enum", {}).items()}
        category_uid = definition["category_uid"]
        # Base Event (class 0) carries its category caption only in its category_uid enum.
        category_enum = attributes["category_uid"].get("enum", {})
        category_name = definition.get("category_name") or category_enum[str(category_uid)]["caption"]
        return OcsfClass(
            uid=definition["uid"], name=definition["name"], caption=definition["caption"],
            category_uid=category_uid, category_name=category_name,
            activities=MappingProxyType(activities),
            profiles=frozenset(definition.get("profiles", ())),
            deprecated="@deprecated" in definition,
        )

    def _make_attribute(self, name: str, definition: Mapping[str, Any]) -> Attribute:
        type_name = definition["type"]
        if type_name == "object_t":
            return Attribute(name=name, type=type_name, json_type="object",
                             is_array=bool(definition.get("is_array")),
                             object_type=definition["object_type"])
        type_def = self._types.get(type_name, {})
        base = type_name if type_name in _BASE_JSON_TYPES else type_def.get("type", "string_t")
        json_type = _BASE_JSON_TYPES.get(base, "string")
        raw_enum = definition.get("enum") or {}
        enum = {(int(value) if json_type == "integer" else value): meta.get("caption", value)
                for value, meta in raw_enum.items()}
        value_range = type_def.get("range")
        return Attribute(
            name=name, type=type_name, json_type=json_type,
            is_array=bool(definition.get("is_array")),
            enum=MappingProxyType(enum), sibling=definition.get("sibling"),
            regex=re.compile(type_def["regex"]) if "regex" in type_def else None,
            max_len=type_def.get("max_len"),
            value_range=tuple(value_range) if value_range else None,
        )

    @staticmethod
    def _in_profiles(definition: Mapping[str, Any], selected: frozenset[str]) -> bool:
        required = definition.get("profiles") or ()
        return not required or any(profile in selected for profile in required)


def _json_schema_validator(raw: Mapping[str, Any], class_name: str,
                           profiles: tuple[str, ...]) -> Any:
    """
    A jsonschema validator for one class + profile set; OCSF integers exclude 1.0 and true.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend
    from ocsf_json_schema import OcsfJsonSchemaEmbedded

    schema = OcsfJsonSchemaEmbedded(dict(raw)).get_class_schema(class_name, list(profiles))
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, instance: _is_int(instance))
    return extend(Draft202012Validator, type_checker=checker)(schema)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _instance_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path


@cache
def ocsf_schema() -> OcsfSchema:
    """
    The OCSF 1.8.0 schema shipped in C{ocsf-json-schema}, read on first use and then shared.
    """
    from ocsf_json_schema import get_ocsf_schema

    return OcsfSchema(get_ocsf_schema(SCHEMA_VERSION))


def find_class(class_uid: int) -> OcsfClass | None:
    """
    The OCSF 1.8.0 class with this uid (L{OcsfSchema.find_class} on the shared schema).
    """
    return ocsf_schema().find_class(class_uid)


def path_exists(class_uid: int, dotted_path: str, profiles: Iterable[str] = ()) -> bool:
    """
    Whether the path exists in the class (L{OcsfSchema.path_exists} on the shared schema).
    """
    return ocsf_schema().path_exists(class_uid, dotted_path, profiles)


def enum_captions(class_uid: int, dotted_path: str,
                  profiles: Iterable[str] = ()) -> Mapping[int | str, str]:
    """
    Value -> caption of an enum attribute (L{OcsfSchema.enum_captions} on the shared schema).
    """
    return ocsf_schema().enum_captions(class_uid, dotted_path, profiles)


def validate_event(event: Any) -> list[str]:
    """
    Why C{event} is not valid OCSF 1.8.0 (empty list: it is valid); see L{OcsfSchema.validate_event}.
    """
    return ocsf_schema().validate_event(event)

"""
Loading templates: YAML checked completely before the daemon starts.

A template is the spec's YAML shape (C{id}, C{vendor_name}, C{product_name}, C{class_uid},
C{class_name}, C{activity_id}, C{field_map}, C{severity_field}, C{severity_map}, C{time_field},
C{constants}) plus an optional C{description}; C{severity_field} and C{time_field} may also be lists
of candidates tried in order. Extensions real vendors need, all declarative: C{activity_field} /
C{activity_map} (the activity from the record), C{time_formats}, C{transforms} (per source path),
C{extract} (values pulled out of text by pattern, L{extract<aisoc_inboxd.normalizer.extract>}),
C{class_field} / C{classes} (the class from the record: each listed value names a class variant
whose C{field_map} and C{constants} extend the template's own, compiled and checked as a template
of that class), and the envelope keys C{decode_json}, C{records}, C{acknowledge_when} and C{idempotency_key}
(L{envelope<aisoc_inboxd.normalizer.envelope>}). A bad template raises L{TemplateError} naming the file and the key,
so start-up fails instead of events being dropped later. Loading also compiles every rule into
plain lookups (L{Compiled<aisoc_inboxd.normalizer.model.Compiled>}) so that applying a template does
no schema work per event.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from aisoc_inboxd.normalizer.codegen import compile_template
from aisoc_inboxd.normalizer.coerce import INVALID, Coercer, coercer_for
from aisoc_inboxd.normalizer.compat import maps_email_party, rewrite_target
from aisoc_inboxd.normalizer.envelope import Condition, Envelope, scalar_text
from aisoc_inboxd.normalizer.extract import Extraction, compile_extractions
from aisoc_inboxd.normalizer.model import Compiled, ConstantRule, FieldRule, Template, TemplateError, TemplateSet
from aisoc_inboxd.normalizer.ocsf import Attribute, OcsfClass, ocsf_schema
from aisoc_inboxd.normalizer.paths import (
    Step,
    compile_target,
    format_target,
    is_header,
    parse_source,
    parse_target,
)
from aisoc_inboxd.normalizer.severity import COMMON_WORDS, fold_severity
from aisoc_inboxd.normalizer.timeparse import check_format
from aisoc_inboxd.normalizer.transforms import OTHERWISE, Reader, Transform, compile_steps

REQUIRED_KEYS = ("id", "vendor_name", "product_name", "class_uid", "class_name", "activity_id")
OPTIONAL_KEYS = ("field_map", "severity_field", "severity_map", "time_field", "constants",
                 "description", "activity_field", "activity_map", "time_formats", "transforms",
                 "decode_json", "records", "acknowledge_when", "idempotency_key", "extract",
                 "class_field", "classes")
#: what a C{classes} entry may set; C{field_map} and C{constants} extend the template's own
VARIANT_KEYS = ("class_uid", "class_name", "activity_id", "field_map", "constants", "activity_field",
                "activity_map")
TEMPLATE_SUFFIXES = (".yaml", ".yml")

# Stamped by the normalizer from the template's own keys; a template cannot target them.
STAMPED_TARGETS = frozenset({
    "class_uid", "class_name", "category_uid", "category_name", "activity_id", "activity_name",
    "type_uid", "type_name", "severity_id", "severity", "time", "raw_data",
})


def load_templates(dirs: list[Path]) -> TemplateSet:
    """
    Every C{*.yaml}/C{*.yml} template in C{dirs}; a later directory overrides an earlier one by id.

    Two files with one id in the same directory, or a missing directory, are errors.
    """
    loaded: dict[str, Template] = {}
    for directory in dirs:
        if not directory.is_dir():
            raise TemplateError(directory, "(directory)", "template directory does not exist")
        seen: dict[str, Path] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix not in TEMPLATE_SUFFIXES or not path.is_file():
                continue
            template = load_template_file(path)
            if template.id in seen:
                raise TemplateError(path, "id", f"duplicate template id {template.id!r} "
                                                f"(also in {seen[template.id].name})")
            seen[template.id] = path
            loaded[template.id] = template
    return TemplateSet(loaded)


def load_template_file(path: Path) -> Template:
    """
    The template in C{path}, validated against OCSF 1.8.0; L{TemplateError} if anything is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(path, "(file)", f"cannot read: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TemplateError(path, "(yaml)", f"YAML syntax error{where}: {problem}") from exc
    template = _Loader(path, document).build()
    return replace(template, digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   to_event=compile_template(template))


class _Loader:
    """
    Validates and compiles one parsed template document; every error names the file and the key.
    """

    def __init__(self, path: Path, document: Any, key_prefix: str = "") -> None:
        """
        @param key_prefix: put before every key an error names (C{classes.<value>.} for a variant).
        """
        self._path = path
        self._doc = document
        self._schema = ocsf_schema()
        self._key_prefix = key_prefix

    def _error(self, key: str, problem: str) -> TemplateError:
        return TemplateError(self._path, self._key_prefix + key, problem)

    def build(self) -> Template:
        doc = self._doc
        if not isinstance(doc, dict):
            raise self._error("(document)", "a template must be a YAML mapping of keys")
        unknown = sorted(str(k) for k in doc if k not in REQUIRED_KEYS + OPTIONAL_KEYS)
        if unknown:
            raise self._error(unknown[0], f"unknown key (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")
        for key in REQUIRED_KEYS:
            if key not in doc:
                raise self._error(key, "required key missing")
        template_id = self._text("id")
        if template_id != self._path.stem:
            raise self._error("id", f"id {template_id!r} must equal the file name {self._path.stem!r}")
        ocsf_class = self._ocsf_class()
        activity_id = self._activity(ocsf_class)
        description = self._text("description") if "description" in doc else None
        profiles = self._profiles(ocsf_class)
        reader = Reader(MappingProxyType(self._transforms()))
        field_map, rewritten, field_rules = self._field_map(ocsf_class, profiles, reader)
        constants, constant_rules = self._constants(ocsf_class, profiles, rewritten, field_map)
        severity_field, severity_map, lookup, severity_otherwise = self._severity(ocsf_class)
        activity_field, activity_map = self._activity_map(ocsf_class)
        time_field = self._candidates("time_field")
        time_formats = self._time_formats()
        severity_captions = self._schema.enum_captions(ocsf_class.uid, "severity_id")
        status_key = {2001: "state_id", 2004: "status_id"}.get(ocsf_class.uid)
        compiled = Compiled(
            ocsf_class=ocsf_class,
            severity_captions=severity_captions,
            field_rules=field_rules,
            constants=constant_rules,
            severity_sources=tuple(reader.bind(parse_source(p)) for p in severity_field),
            severity_lookup=MappingProxyType(lookup),
            severity_otherwise=severity_otherwise,
            time_sources=tuple(reader.bind(parse_source(p)) for p in time_field),
            status_captions=(self._schema.enum_captions(ocsf_class.uid, status_key)
                             if status_key else MappingProxyType({})),
            time_formats=time_formats,
            activity_sources=tuple(reader.bind(parse_source(p)) for p in activity_field),
            activity_lookup=MappingProxyType({fold_severity(k): v for k, v in activity_map.items()}),
            reader=reader,
            envelope=self._envelope(),
            extractions=self._extractions(),
            **self._class_variants(reader),
        )
        return Template(
            id=template_id, vendor_name=self._text("vendor_name"),
            product_name=self._text("product_name"), class_uid=ocsf_class.uid,
            class_name=ocsf_class.caption, activity_id=activity_id,
            field_map=MappingProxyType(field_map), severity_field=severity_field,
            severity_map=MappingProxyType(severity_map), time_field=time_field,
            constants=MappingProxyType(constants), description=description, source=self._path,
            rewritten=MappingProxyType(rewritten), compiled=compiled,
            activity_field=activity_field, activity_map=MappingProxyType(activity_map),
            time_formats=time_formats,
        )

    # -------------------------------------------------------------- scalar keys

    def _text(self, key: str) -> str:
        value = self._doc[key]
        if not isinstance(value, str) or not value.strip():
            raise self._error(key, f"must be a non-empty string, got {value!r}")
        return value

    def _integer(self, key: str) -> int:
        value = self._doc[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._error(key, f"must be an integer, got {value!r}")
        return value

    def _ocsf_class(self) -> OcsfClass:
        class_uid = self._integer("class_uid")
        ocsf_class = self._schema.find_class(class_uid)
        if ocsf_class is None:
            raise self._error("class_uid", f"unknown class {class_uid} in OCSF {self._schema.version}")
        class_name = self._text("class_name")
        if class_name != ocsf_class.caption:
            raise self._error("class_name", f"{class_name!r} is not the name of class {class_uid} "
                                            f"(expected {ocsf_class.caption!r})")
        return ocsf_class

    def _activity(self, ocsf_class: OcsfClass) -> int:
        activity_id = self._integer("activity_id")
        if activity_id not in ocsf_class.activities:
            allowed = ", ".join(f"{k} {v}" for k, v in sorted(ocsf_class.activities.items()))
            raise self._error("activity_id", f"{activity_id} is not an activity of class "
                                             f"{ocsf_class.uid} {ocsf_class.caption} (allowed: {allowed})")
        return activity_id

    def _profiles(self, ocsf_class: OcsfClass) -> tuple[str, ...]:
        """
        The profiles the template declares in C{constants: metadata.profiles}, which make their
        attributes valid targets.
        """
        constants = self._doc.get("constants") or {}
        declared = constants.get("metadata.profiles", []) if isinstance(constants, dict) else []
        key = "constants.metadata.profiles"
        if not isinstance(declared, list) or not all(isinstance(p, str) for p in declared):
            raise self._error(key, "must be a list of profile names")
        for name in declared:
            if name not in ocsf_class.profiles:
                raise self._error(key, f"profile {name!r} does not apply to class {ocsf_class.uid} "
                                       f"(known: {', '.join(sorted(ocsf_class.profiles))})")
        return tuple(declared)

    def _candidates(self, key: str) -> tuple[str, ...]:
        """
        A source path or a non-empty list of them (tried in order), each checked for syntax.
        """
        value = self._doc.get(key)
        if value is None:
            return ()
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list) or not paths:
            raise self._error(key, "must be a source path or a non-empty list of source paths")
        for index, path in enumerate(paths):
            try:
                parse_source(path)
            except ValueError as exc:
                raise self._error(f"{key}[{index}]" if isinstance(value, list) else key, str(exc)) from exc
        return tuple(paths)

    def _severity(self, ocsf_class: OcsfClass
                  ) -> tuple[tuple[str, ...], dict[str, int], dict[str, int], int | None]:
        """
        C{severity_field}, the template's own C{severity_map}, the lookup the normalizer uses (the
        common words of L{COMMON_WORDS} overlaid with the map, or the map alone when it has a
        C{"*"} key) and the C{"*"} severity_id, if any.
        """
        severity_field = self._candidates("severity_field")
        raw_map = self._doc.get("severity_map")
        if raw_map is not None and not severity_field:
            raise self._error("severity_field", "severity_map needs a severity_field to read")
        if not severity_field:
            return (), {}, {}, None
        if raw_map is None:
            return severity_field, {}, dict(COMMON_WORDS), None
        if not isinstance(raw_map, dict) or not raw_map:
            raise self._error("severity_map", "must be a non-empty mapping of source value -> severity_id")
        allowed = self._schema.enum_captions(ocsf_class.uid, "severity_id")
        severity_map: dict[str, int] = {}
        lookup: dict[str, int] = {}
        for source_value, severity_id in raw_map.items():
            key = f"severity_map.{source_value}"
            if isinstance(source_value, (dict, list)) or source_value is None:
                raise self._error(key, "source values must be strings or numbers")
            if isinstance(severity_id, bool) or severity_id not in allowed:
                listed = ", ".join(f"{k} {v}" for k, v in sorted(allowed.items()))
                raise self._error(key, f"{severity_id!r} is not an OCSF severity_id ({listed})")
            severity_map[str(source_value)] = severity_id
            folded = fold_severity(source_value)
            if lookup.get(folded, severity_id) != severity_id:
                raise self._error(key, "conflicts with another key that differs only in case")
            lookup[folded] = severity_id
        otherwise = lookup.pop(OTHERWISE, None)
        if otherwise is None:
            lookup = {**COMMON_WORDS, **lookup}
        return severity_field, severity_map, lookup, otherwise

    def _activity_map(self, ocsf_class: OcsfClass) -> tuple[tuple[str, ...], dict[str, int]]:
        """
        C{activity_field} candidates and C{activity_map} (source value -> activity_id of the class).
        """
        activity_field = self._candidates("activity_field")
        raw_map = self._doc.get("activity_map")
        if bool(activity_field) != (raw_map is not None):
            missing = "activity_map" if activity_field else "activity_field"
            raise self._error(missing, "activity_field and activity_map go together")
        if raw_map is None:
            return (), {}
        if not isinstance(raw_map, dict) or not raw_map:
            raise self._error("activity_map", "must be a non-empty mapping of source value -> activity_id")
        allowed = ", ".join(f"{k} {v}" for k, v in sorted(ocsf_class.activities.items()))
        activity_map: dict[str, int] = {}
        folded: dict[str, int] = {}
        for source_value, activity_id in raw_map.items():
            key = f"activity_map.{source_value}"
            if isinstance(source_value, (dict, list)) or source_value is None:
                raise self._error(key, "source values must be strings or numbers")
            if isinstance(activity_id, bool) or activity_id not in ocsf_class.activities:
                raise self._error(key, f"{activity_id!r} is not an activity of class {ocsf_class.uid} "
                                       f"{ocsf_class.caption} (allowed: {allowed})")
            if folded.setdefault(fold_severity(source_value), activity_id) != activity_id:
                raise self._error(key, "conflicts with another key that differs only in case")
            activity_map[str(source_value)] = activity_id
        return activity_field, activity_map

    def _class_variants(self, reader: Reader) -> dict[str, Any]:
        """
        C{class_field} candidates and C{classes} (value -> class variant), each variant compiled as
        the whole template with the variant's class and activity and its C{field_map}/C{constants}
        merged over the template's own, so every target is checked against the class it lands in.
        """
        class_field = self._candidates("class_field")
        raw = self._doc.get("classes")
        if bool(class_field) != (raw is not None):
            missing = "classes" if class_field else "class_field"
            raise self._error(missing, "class_field and classes go together")
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not raw:
            raise self._error("classes", "must be a non-empty mapping of source value -> class variant")
        base = {k: v for k, v in self._doc.items() if k not in ("class_field", "classes")}
        variants: dict[str, Template] = {}
        for value, variant in raw.items():
            key = f"classes.{value}"
            if isinstance(value, (dict, list)) or value is None:
                raise self._error(key, "source values must be strings or numbers")
            if not isinstance(variant, dict):
                raise self._error(key, f"must be a mapping with keys among: {', '.join(VARIANT_KEYS)}")
            unknown = sorted(str(k) for k in variant if k not in VARIANT_KEYS)
            if unknown:
                raise self._error(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(VARIANT_KEYS)})")
            for required in ("class_uid", "class_name", "activity_id"):
                if required not in variant:
                    raise self._error(f"{key}.{required}", "required key missing")
            document = {**base, **variant}
            for merged in ("field_map", "constants"):
                extra = variant.get(merged) or {}
                if not isinstance(extra, dict):
                    raise self._error(f"{key}.{merged}", "must be a mapping")
                document[merged] = {**(base.get(merged) or {}), **extra}
            if fold_severity(value) in variants:
                raise self._error(key, "conflicts with another key that differs only in case")
            variants[fold_severity(value)] = _Loader(self._path, document, f"{key}.").build()
        return {"class_sources": tuple(reader.bind(parse_source(p)) for p in class_field),
                "variants": MappingProxyType(variants)}

    def _time_formats(self) -> tuple[str, ...]:
        value = self._doc.get("time_formats")
        if value is None:
            return ()
        formats = [value] if isinstance(value, str) else value
        if not isinstance(formats, list) or not formats:
            raise self._error("time_formats", "must be a strptime format or a non-empty list of them")
        for index, time_format in enumerate(formats):
            try:
                check_format(time_format)
            except ValueError as exc:
                raise self._error(f"time_formats[{index}]", str(exc)) from exc
        return tuple(formats)

    def _transforms(self) -> dict[tuple[str, ...], Transform]:
        raw = self._doc.get("transforms") or {}
        if not isinstance(raw, dict):
            raise self._error("transforms", "must be a mapping of source path -> list of transforms")
        compiled: dict[tuple[str, ...], Transform] = {}
        for source, steps in raw.items():
            key = f"transforms.{source}"
            try:
                compiled[parse_source(source)] = compile_steps(steps)
            except ValueError as exc:
                raise self._error(key, str(exc)) from exc
        return compiled

    def _extractions(self) -> tuple[Extraction, ...]:
        try:
            return compile_extractions(self._doc.get("extract"))
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            raise self._error(key, problem) from exc

    def _envelope(self) -> Envelope:
        decode_json = self._candidates("decode_json")
        if any(is_header(parse_source(p)) for p in decode_json):
            raise self._error("decode_json", "decodes fields of the record, not headers")
        records = self._doc.get("records")
        if records is not None:
            try:
                records_path = parse_source(records)
            except ValueError as exc:
                raise self._error("records", str(exc)) from exc
            if is_header(records_path):
                raise self._error("records", "must be a path in the record, not a header")
        else:
            records_path = None
        return Envelope(
            decode_json=tuple(parse_source(p) for p in decode_json),
            records=records_path,
            acknowledge_when=self._conditions(),
            idempotency_key=tuple(parse_source(p) for p in self._candidates("idempotency_key")),
        )

    def _conditions(self) -> tuple[Condition, ...]:
        """
        C{acknowledge_when}: a list of conditions, each a mapping of source -> value or list of
        values, all of which must hold.
        """
        raw = self._doc.get("acknowledge_when")
        if raw is None:
            return ()
        if not isinstance(raw, list) or not raw:
            raise self._error("acknowledge_when", "must be a non-empty list of conditions "
                                                  "(each a mapping of source path -> value)")
        conditions: list[Condition] = []
        for index, condition in enumerate(raw):
            key = f"acknowledge_when[{index}]"
            if not isinstance(condition, dict) or not condition:
                raise self._error(key, "must be a mapping of source path -> value or list of values")
            pairs = []
            for source, expected in condition.items():
                try:
                    parsed = parse_source(source)
                except ValueError as exc:
                    raise self._error(f"{key}.{source}", str(exc)) from exc
                values = expected if isinstance(expected, list) else [expected]
                if not values or any(v is None or isinstance(v, (dict, list)) for v in values):
                    raise self._error(f"{key}.{source}", "must be a scalar or a list of scalars")
                pairs.append((parsed, frozenset(scalar_text(v) for v in values)))
            conditions.append(tuple(pairs))
        return tuple(conditions)

    # ------------------------------------------------------------------ targets

    def _field_map(self, ocsf_class: OcsfClass, profiles: tuple[str, ...], reader: Reader
                   ) -> tuple[dict[str, str | tuple[str, ...]], dict[str, str], tuple[FieldRule, ...]]:
        """
        Each source maps to one OCSF path, or to a list of them (the same value in several places,
        e.g. an advisory's summary as the finding's and the vulnerability's title).
        """
        raw = self._doc.get("field_map") or {}
        if not isinstance(raw, dict):
            raise self._error("field_map", "must be a mapping of source path -> OCSF path")
        with_email = maps_email_party(str(t) for t in _flat_targets(raw.values()))
        field_map: dict[str, str | tuple[str, ...]] = {}
        rewritten: dict[str, str] = {}
        rules: list[FieldRule] = []
        for source, written_targets in raw.items():
            key = f"field_map.{source}"
            try:
                bound = reader.bind(parse_source(source))
            except ValueError as exc:
                raise self._error(key, str(exc)) from exc
            many = isinstance(written_targets, list) and bool(written_targets)
            targets: list[str] = []
            for written in written_targets if many else [written_targets]:
                if not isinstance(written, str):
                    raise self._error(key, f"target must be an OCSF dotted path or a list of them, "
                                           f"got {written!r}")
                target = rewrite_target(ocsf_class.uid, written, with_email)
                if target != written:
                    rewritten[written] = target
                steps, attribute = self._resolve(key, ocsf_class, written, target, profiles)
                coerce = self._coercer(key, attribute, steps)
                sibling, captions = self._sibling(steps, attribute)
                targets.append(target)
                write_sibling = compile_target(sibling) if sibling is not None else None
                rules.append(FieldRule(bound, format_target(steps), compile_target(steps), coerce,
                                       write_sibling, captions))
            field_map[source] = tuple(targets) if many else targets[0]
        self._check_nesting(rules)
        return field_map, rewritten, tuple(rules)

    def _constants(self, ocsf_class: OcsfClass, profiles: tuple[str, ...],
                   rewritten: dict[str, str], field_map: dict[str, str | tuple[str, ...]]
                   ) -> tuple[dict[str, Any], tuple[ConstantRule, ...]]:
        raw = self._doc.get("constants") or {}
        if not isinstance(raw, dict):
            raise self._error("constants", "must be a mapping of OCSF path -> value")
        with_email = maps_email_party(_flat_targets(field_map.values()))
        mapped = set(_flat_targets(field_map.values()))
        constants: dict[str, Any] = {}
        rules: list[ConstantRule] = []
        for written, value in raw.items():
            key = f"constants.{written}"
            if not isinstance(written, str):
                raise self._error(key, "constant targets must be OCSF dotted paths")
            target = rewrite_target(ocsf_class.uid, written, with_email)
            if target != written:
                rewritten[written] = target
            steps, attribute = self._resolve(key, ocsf_class, written, target, profiles)
            if target in mapped:
                raise self._error(key, f"{target!r} is also a field_map target; use one or the other")
            converted = self._coercer(key, attribute, steps)(value)
            if converted is INVALID:
                raise self._error(key, f"{value!r} is not a valid value for {target!r} "
                                       f"({attribute.type}{'[]' if attribute.is_array else ''})")
            sibling, captions = self._sibling(steps, attribute)
            caption = (compile_target(sibling), captions[converted]) if sibling and converted in captions else None
            constants[target] = converted
            rules.append(ConstantRule(compile_target(steps), converted, caption))
        return constants, tuple(rules)

    def _resolve(self, key: str, ocsf_class: OcsfClass, written: str, target: str,
                 profiles: tuple[str, ...]) -> tuple[tuple[Step, ...], Attribute]:
        """
        The steps (bare arrays inside the path become element 0) and leaf attribute of a target.
        """
        shown = target if target == written else f"{written!r} (rewritten to {target!r})"
        try:
            steps = parse_target(target)
        except ValueError as exc:
            raise self._error(key, str(exc)) from exc
        top = steps[0].key
        if top in STAMPED_TARGETS and len(steps) == 1:
            raise self._error(key, f"{top!r} is stamped by the normalizer from the template's "
                                   f"own keys and cannot be a target")
        chain = self._schema.attribute_chain(ocsf_class.uid, target, profiles)
        if chain is None:
            raise self._error(key, f"{shown} is not an attribute path of class {ocsf_class.uid} "
                                   f"{ocsf_class.caption} in OCSF {self._schema.version}"
                                   f"{' with profiles ' + ', '.join(profiles) if profiles else ''}")
        if sum(step.append or step.aligned for step in steps[:-1]) > 1:
            raise self._error(key, f"{shown}: only one [] or [*] may spread a list inside a path")
        normalized: list[Step] = []
        for position, (step, attribute) in enumerate(zip(steps, chain)):
            last = position == len(steps) - 1
            if (step.index is not None or step.append or step.aligned) and not attribute.is_array:
                raise self._error(key, f"{shown}: '{step.key}' is not an array, so it takes no [ ]")
            if (step.index is not None or step.aligned) and last:
                raise self._error(key, f"{shown}: use '{step.key}[]' to append to an array, "
                                       f"not an index")
            if attribute.is_array and not last and step.index is None and not step.append and not step.aligned:
                step = Step(step.key, index=0)
            normalized.append(step)
        return tuple(normalized), chain[-1]

    def _coercer(self, key: str, attribute: Attribute, steps: tuple[Step, ...]) -> Coercer:
        try:
            coerce = coercer_for(attribute)
        except ValueError as exc:
            raise self._error(key, str(exc)) from exc
        if any(step.aligned for step in steps[:-1]):
            def aligned(value: Any) -> Any:
                """
                A C{name[*]} inside the path spreads a list by position: convert each item on its
                own, an item that cannot be converted (or is null) becoming C{None}, which fills nothing.
                """
                items = value if isinstance(value, list) else [value]
                converted = [None if item is None or (c := coerce(item)) is INVALID else c for item in items]
                return converted if any(c is not None for c in converted) else INVALID

            return aligned
        if not any(step.append for step in steps[:-1]):
            return coerce

        def each(value: Any) -> Any:
            """
            A C{name[]} inside the path spreads a list: convert each item on its own.
            """
            items = value if isinstance(value, list) else [value]
            kept = [c for c in map(coerce, items) if c is not INVALID]
            return kept or INVALID

        return each

    @staticmethod
    def _sibling(steps: tuple[Step, ...], attribute: Attribute
                 ) -> tuple[tuple[Step, ...] | None, Mapping[Any, str]]:
        """
        Where the caption of an enum target goes, and the captions; none for arrays, and none when
        the path spreads a list (a caption per item is not written).
        """
        spreads = any(step.append or step.aligned for step in steps[:-1])
        if not attribute.sibling or not attribute.enum or attribute.is_array or spreads:
            return None, {}
        return steps[:-1] + (Step(attribute.sibling),), attribute.enum

    def _check_nesting(self, rules: list[FieldRule]) -> None:
        """
        A target inside another target's value would overwrite it: reject it at load.
        """
        targets = {rule.target for rule in rules}
        for rule in rules:
            for other in targets:
                if other != rule.target and other.startswith(rule.target + "."):
                    raise self._error(f"field_map.{'.'.join(rule.source.keys)}",
                                      f"target {rule.target!r} contains another target {other!r}")


def _flat_targets(values: Any) -> list[Any]:
    """
    The field_map targets, with lists of targets spread out.
    """
    return [t for value in values for t in (value if isinstance(value, (list, tuple)) else [value])]

"""
Templates compiled to Python: at load, each template becomes one generated function per class
variant that does what the interpreter (L{apply<aisoc_inboxd.normalizer.apply>}) does, written
straight: reads of the record with the path walk and transform inlined, conversions and writes into
the event, constants prebuilt, and the source paths it may consume known in advance, so that what
an event consumed is an int of bits and C{unmapped} comes from a consumed-paths tree made once per
combination: one dict comprehension when only top-level keys were consumed, else a walk of the
consumed parts only.

The interpreter stays the reference: the differential test (C{tests/test_compiled_templates.py})
runs both over every template, fixture and generated record and compares the events field for field.

Safety: the generated text holds no template-derived text except dictionary keys written with
C{repr()} (a Python literal that evaluates to the same string); every other value a template
supplies (constants, captions, lookups, coercers, transforms) is a name in the function's namespace.
"""
from __future__ import annotations

import json
from functools import lru_cache, partial
from itertools import groupby
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Callable, Iterable

from aisoc_inboxd.normalizer.apply import (
    ACTIVITY_CLOSE,
    ACTIVITY_CREATE,
    FINDING_SHAPES,
    LOG_PROVIDER,
    SEVERITY_OTHER,
    SEVERITY_UNKNOWN,
    STATUS_NEW,
    STATUS_RESOLVED,
    ConsumedTree,
    IngestContext,
    consumed_tree,
    copy_json,
    merge_missing,
)
from aisoc_inboxd.normalizer.coerce import INVALID, _to_string
from aisoc_inboxd.normalizer.extract import EXTRACTED, Extraction, first_match, search
from aisoc_inboxd.normalizer.fastpaths import fast_to_epoch_ms, leftovers_for
from aisoc_inboxd.normalizer.memo import TextMemo
from aisoc_inboxd.normalizer.model import FieldRule, Template
from aisoc_inboxd.normalizer.ocsf import SCHEMA_VERSION
from aisoc_inboxd.normalizer.paths import MISSING, Step, element_at, get_source, is_header
from aisoc_inboxd.normalizer.severity import fold_severity
from aisoc_inboxd.normalizer.timeparse import EPOCH_MS
from aisoc_inboxd.normalizer.transforms import Reader
from aisoc_inboxd.normalizer.uids import new_uid

#: C{to_event(record, context)}: the OCSF event for one unwrapped record
EventFunction = Callable[[dict[str, Any], IngestContext], dict[str, Any]]
#: how many consumed-path combinations a class variant keeps the tree of
TREES_CACHED = 1024

_HELPERS = {
    "MISSING": MISSING, "INVALID": INVALID, "EMPTY": MappingProxyType({}), "TEXT": frozenset({str}),
    "get_source": get_source,
    "fold": fold_severity, "fast_to_epoch_ms": fast_to_epoch_ms, "copy_json": copy_json,
    "merge_missing": merge_missing, "first_match": first_match,
    "new_uid": new_uid, "element_at": element_at, "dumps": json.dumps, "SCHEMA_VERSION": SCHEMA_VERSION, "LOG_PROVIDER": LOG_PROVIDER,
}


def compile_template(template: Template) -> EventFunction:
    """
    The generated C{to_event} for C{template}: extraction, the class variant, then its body.
    """
    compiled = template.compiled
    if not compiled.extractions and not compiled.class_sources:
        return _EntryBody(template, ()).function()
    top = _Code()
    prefix: tuple[tuple[str, ...], ...] = ((EXTRACTED,),) if compiled.extractions else ()
    top.line("def to_event(record, context):")
    top.indent += 1
    top.line("headers = context.headers or EMPTY")
    top.line("original = record")
    if compiled.extractions:
        top.extract(compiled.extractions)
    for source in compiled.class_sources:  # the first candidate whose value names a variant decides
        bodies = {value: _compile_body(variant, prefix + (source.keys,))
                  for value, variant in compiled.variants.items()}
        top.read(source.keys, compiled.reader, "raw")
        top.line("if raw is not MISSING and raw is not None and not isinstance(raw, (dict, list)):")
        top.line(f"    body = {top.const(bodies)}.get({top.fold('raw')})")
        top.line("    if body is not None:")
        top.line("        return body(original, record, context, headers)")
    top.line(f"return {top.const(_compile_body(template, prefix))}(original, record, context, headers)")
    return top.function("to_event", template.id)


def _compile_body(template: Template, consumed: tuple[tuple[str, ...], ...]) -> Callable[..., dict[str, Any]]:
    """
    C{body(original, record, context, headers)} for one class variant, C{consumed} naming what
    was consumed before it ran (the extracted values, the class field that chose it).
    """
    return Body(template, consumed).function()


class _Code:
    """
    Generated source text and the namespace its names refer to.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.indent = 0
        self.namespace: dict[str, Any] = dict(_HELPERS)

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    @staticmethod
    def fold(var: str) -> str:
        """
        L{fold_severity} of the variable C{var}, with text (nearly every value) folded inline.
        """
        return f"({var}.casefold() if type({var}) is str else fold({var}))"

    def const(self, value: Any) -> str:
        """
        A name for C{value} in the namespace: template data never becomes source text.
        """
        name = f"K{len(self.namespace) - len(_HELPERS)}"
        self.namespace[name] = value
        return name

    #: top-level keys whose value a body reads once into a local (C{record["cef"]} for CEF)
    hoisted: dict[str, str] = {}

    def read(self, keys: tuple[str, ...], reader: Reader, into: str) -> None:
        """
        C{into = reader.bind(keys).read(record, headers)}, inlined: a walk through plain objects,
        falling back to L{get_source} (lists, dead ends) where one is not an object. The record
        is an object (every intake's records are, and batch items are made objects by unwrap); a
        walk under a hoisted top-level key starts from its local (the record does not change).
        """
        if is_header(keys):
            self.line(f"{into} = headers.get({keys[1]!r}, MISSING)")
        else:
            start = self.hoisted.get(keys[0]) if len(keys) > 1 else None
            fallback = f"{into} = get_source(record, {self.const(keys)})"
            if start is None:  # the record is an object
                self.line(f"{into} = record.get({keys[0]!r}, MISSING)")
                walk, depth = keys[1:], 0
            else:  # an absent key (most of a template's keys, in any one record) costs one C{in}
                self.line(f"if {keys[1]!r} in {start}_keys:")
                self.line(f"    {into} = {start}_keys[{keys[1]!r}]")
                walk, depth = keys[2:], 1
            for key in walk:
                self.line("    " * depth + f"if type({into}) is dict:")
                self.line("    " * depth + f"    {into} = {into}.get({key!r}, MISSING)")
                depth += 1
            for level in range(depth - 1, -1 if start is None else 0, -1):
                self.line("    " * level + f"elif {into} is not MISSING:")
                self.line("    " * level + f"    {fallback}")
            if start is not None:
                self.line(f"elif {start}_odd:")
                self.line(f"    {fallback}")
                self.line("else:")
                self.line(f"    {into} = MISSING")
        self.transform(keys, reader, into)

    def transform(self, keys: tuple[str, ...], reader: Reader, into: str) -> None:
        """
        C{into} read through the transform C{reader} has for C{keys}, if any (text by its memo).
        """
        transform = reader.transforms.get(keys)
        if transform is not None:
            memo = self.const(TextMemo(transform, MISSING))
            self.line(f"if type({into}) is str:")
            self.line(f"    {into} = {memo}[{into}]")
            self.line(f"elif {into} is not MISSING and {into} is not None:")
            self.line(f"    {into} = {self.const(transform)}({into})")

    def hoist(self, paths: Iterable[tuple[str, ...]]) -> None:
        """
        Read once each top-level key that two or more of the nested source C{paths} walk through.
        """
        nested = [keys for keys in dict.fromkeys(paths) if len(keys) > 1 and not is_header(keys)]
        shared = [key for key in dict.fromkeys(keys[0] for keys in nested)
                  if sum(keys[0] == key for keys in nested) > 1]
        for number, key in enumerate(shared):
            self.read((key,), Reader(), f"top_{number}")
            # C{top_N_keys}: the object to look keys up in (empty unless it is one); C{top_N_odd}: a
            # value that is not an object, walked by L{get_source} (a list of objects)
            self.line(f"if type(top_{number}) is dict:")
            self.line(f"    top_{number}_keys, top_{number}_odd = top_{number}, False")
            self.line("else:")
            self.line(f"    top_{number}_keys, top_{number}_odd = EMPTY, top_{number} is not MISSING")
        self.hoisted = {key: f"top_{number}" for number, key in enumerate(shared)}

    def extract(self, extractions: tuple[Extraction, ...]) -> None:
        """
        L{with_extracted<aisoc_inboxd.normalizer.extract.with_extracted>}, inlined: per extraction
        the first source whose text matches (a text looked up in the extraction's L{TextMemo}, a
        list source through L{first_match}), then the record copied with the values under
        C{extracted}. Extractions read the record only, never headers.
        """
        self.line("found = {}")
        self.hoist(keys for extraction in extractions for keys in extraction.paths)
        untransformed = Reader()
        for extraction in extractions:
            pattern = self.const(extraction.pattern)
            matches = self.const(TextMemo(partial(search, extraction.pattern)))
            self.line("value = None")
            for keys in (keys for keys in extraction.paths if not is_header(keys)):
                self.line("if value is None:")
                self.indent += 1
                self.read(keys, untransformed, "text")
                self.line("if type(text) is str:")
                self.line(f"    value = {matches}[text]")
                self.line("elif text is not MISSING and text is not None:")
                self.line(f"    value = first_match({pattern}, text)")
                self.indent -= 1
            self.line("if value is not None:")
            self.line(f"    found[{extraction.name!r}] = value")
        self.bind_extracted()
        self.hoisted = {}  # (the record changed)

    def bind_extracted(self) -> None:
        """
        The record the rules read: a copy with the extracted values (the caller's is not changed).
        """
        self.line(f"record = {{**record, {EXTRACTED!r}: found}}")

    def write(self, steps: tuple[Step, ...], writer: Callable[..., None], value: str) -> None:
        """
        C{writer(event, value)}: a chain of C{setdefault} (and L{element_at} for C{[N]} steps) for a
        path without C{[]} or C{[*]} steps, else the writer.
        """
        if any(step.append or step.aligned for step in steps):
            self.line(f"{self.const(writer)}(event, {value})")
            return
        *parents, last = steps
        container = "event"
        if parents and parents[0] == Step("metadata"):  # the same object as event["metadata"]
            container, parents = "metadata", parents[1:]
        for step in parents:
            if step.index is None:
                container += f".setdefault({step.key!r}, {{}})"
            else:
                container = f"element_at({container}.setdefault({step.key!r}, []), {step.index!r})"
        self.line(f"{container}[{last.key!r}] = {value}")  # (set_target too writes a last [N] as its key)

    def function(self, name: str, template_id: str) -> Callable[..., Any]:
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, f"<template {template_id}: {name}>", "exec"), self.namespace)
        function = self.namespace[name]
        function.source = source  # for reading what a template became when debugging
        return function


class Body(_Code):
    """
    The generated body of one class variant.
    """

    def __init__(self, template: Template, consumed: tuple[tuple[str, ...], ...]) -> None:
        super().__init__()
        self.template = template
        self.compiled = template.compiled
        self.extracted = any(keys == (EXTRACTED,) for keys in consumed)
        paths = [keys for keys in consumed] + [
            source.keys for source in (*(rule.source for rule in self.compiled.field_rules),
                                       *self.compiled.severity_sources, *self.compiled.time_sources)]
        #: every record path this body may consume, in a fixed order (its bit is 1 << position)
        self.paths = tuple(dict.fromkeys(keys for keys in paths if self._tracked(keys)))
        self.initial = tuple(keys for keys in consumed if self._tracked(keys))

    def _tracked(self, keys: tuple[str, ...]) -> bool:
        """
        Whether consuming C{keys} can change C{unmapped}: headers are not in the record, and the
        extracted values are consumed whole whenever the template extracts.
        """
        return not is_header(keys) and not (self.extracted and keys[0] == EXTRACTED and len(keys) > 1)

    def consume(self, keys: tuple[str, ...]) -> None:
        """
        Mark C{keys} consumed: set its bit in C{consumed}.
        """
        if self._tracked(keys):
            self.line(f"consumed |= {self.bit(keys)}")

    def bit(self, keys: tuple[str, ...]) -> int:
        """
        The bit of C{keys} in C{consumed} (C{0} when consuming it changes nothing).
        """
        return 1 << self.paths.index(keys) if self._tracked(keys) else 0

    def function(self) -> Callable[..., Any]:  # type: ignore[override]
        self.prelude()
        self.line(f"consumed = {sum(map(self.bit, self.initial))}")
        self._hoist()
        self._stamp()
        self._field_rules()
        self._constants()
        self._severity()
        self._time()
        self.line("event_uid = new_uid()")
        self._finding_defaults()
        self.line("metadata['version'] = SCHEMA_VERSION")
        self.line("metadata['uid'] = event_uid")
        self.line("metadata['tenant_uid'] = context.tenant_id")
        self.line("metadata['logged_time'] = int(context.received_at * 1000)")
        self.line("metadata['log_provider'] = LOG_PROVIDER")
        self._unmapped()
        self.line("raw = context.raw")
        self.line("event['raw_data'] = raw if raw is not None else dumps(original, ensure_ascii=False)")
        self.line("return event")
        return super().function("body", self.template.id)

    def prelude(self) -> None:
        """
        The body's C{def} line and what it does before the rules (a subclass reads other arguments).
        """
        self.line("def body(original, record, context, headers):")
        self.indent += 1

    def _hoist(self) -> None:
        compiled = self.compiled
        self.hoist(source.keys for source in (*(rule.source for rule in compiled.field_rules),
                                              *compiled.severity_sources, *compiled.time_sources,
                                              *compiled.activity_sources))

    def _candidate(self, keys: tuple[str, ...], reader: Reader) -> None:
        """
        Open the block of one candidate source (activity, severity, time) inside the candidates'
        C{while True:} (L{_first}): read C{raw}, and go on if it holds a scalar (absent, null,
        object and array values name nothing). The caller closes the block, having left the loop
        with C{break} once a candidate decided.
        """
        self.read(keys, reader, "raw")
        self.line("if raw is not MISSING and raw is not None and not isinstance(raw, (dict, list)):")
        self.indent += 1

    def _first(self) -> None:
        """
        Open a run of candidates: a C{while True:} left by the C{break} of the first that decides
        (or at the end), so that the later ones are not even tested: no flag, no C{is None} test
        per candidate (the loop costs no bytecode but its jumps). The caller closes it.
        """
        self.line("while True:")
        self.indent += 1

    def _last(self) -> None:
        self.line("break")
        self.indent -= 1

    def _stamp(self) -> None:
        template, compiled = self.template, self.compiled
        ocsf_class = compiled.ocsf_class
        if compiled.activity_sources:
            self.line("activity_id = None")
            lookup = self.const(compiled.activity_lookup)
            self._first()
            for source in compiled.activity_sources:
                self._candidate(source.keys, compiled.reader)
                self.line(f"activity_id = {lookup}.get({self.fold('raw')})")
                self.line("if activity_id is not None:")
                self.line("    break")
                self.indent -= 1
            self._last()
            self.line("if activity_id is None:")
            self.line(f"    activity_id = {template.activity_id!r}")
            table = {activity_id: (name, ocsf_class.uid * 100 + activity_id, f"{ocsf_class.caption}: {name}")
                     for activity_id, name in ocsf_class.activities.items()}
            self.line(f"activity_name, type_uid, type_name = {self.const(table)}[activity_id]")
            activity_id, activity_name, type_uid, type_name = "activity_id", "activity_name", "type_uid", "type_name"
        else:
            name = ocsf_class.activities[template.activity_id]
            activity_id = repr(int(template.activity_id))
            activity_name = self.const(name)
            type_uid = repr(int(ocsf_class.uid * 100 + template.activity_id))
            type_name = self.const(f"{ocsf_class.caption}: {name}")
        self.line(f"metadata = {{'product': {{'vendor_name': {self.const(template.vendor_name)}, "
                  f"'name': {self.const(template.product_name)}}}, 'log_name': {self.const(template.id)}, "
                  f"'log_source': context.route}}")
        self.line(f"event = {{'class_uid': {int(ocsf_class.uid)!r}, 'class_name': {self.const(ocsf_class.caption)}, "
                  f"'category_uid': {self.const(ocsf_class.category_uid)}, "
                  f"'category_name': {self.const(ocsf_class.category_name)}, "
                  f"'activity_id': {activity_id}, 'activity_name': {activity_name}, "
                  f"'type_uid': {type_uid}, 'type_name': {type_name}, 'metadata': metadata}}")

    def _field_rules(self) -> None:
        """
        C{field_map}: the first present, convertible source of a target wins. The rules of a
        target that follow one another are one run of candidates (L{_first}); a flag per target
        that several runs share stands for the interpreter's C{filled} set.
        """
        runs = [list(run) for _, run in groupby(self.compiled.field_rules, key=attrgetter("target"))]
        shared = {run[0].target for run in runs if sum(other[0].target == run[0].target for other in runs) > 1}
        flags = {target: f"filled_{number}" for number, target in enumerate(sorted(shared))}
        for flag in flags.values():
            self.line(f"{flag} = False")
        tested = set()  # (the first run of a target needs no test: its flag is still False)
        for run in runs:
            flag = flags.get(run[0].target)
            opened = flag is not None and run[0].target in tested
            tested.add(run[0].target)
            if opened:
                self.line(f"if not {flag}:")
                self.indent += 1
            if len(run) > 1:
                self._first()
            for rule in run:
                self._field_rule(rule, flag, len(run) > 1)
            if len(run) > 1:
                self._last()
            if opened:
                self.indent -= 1

    def _field_rule(self, rule: FieldRule, flag: str | None, in_run: bool) -> None:
        """
        One C{field_map} rule: read, convert, write and consume; leave its run (C{in_run}) once written.
        """
        self.read(rule.source.keys, self.compiled.reader, "value")
        self.line("if value is not MISSING and value is not None:")
        self.indent += 1
        self.coerce(rule.coerce)
        self.line("if value is not INVALID:")
        self.indent += 1
        self.write(_steps(rule.write), rule.write, "value")
        if rule.sibling is not None:  # 99 Other is captioned with the value as sent
            self.line(f"caption = {self.const(rule.captions)}.get(value) if value != {SEVERITY_OTHER} else None")
            self.line(f"{self.const(rule.sibling)}(event, caption or "
                      f"str(get_source(record, {self.const(rule.source.keys)}, headers)))")
        if flag is not None:
            self.line(f"{flag} = True")
        self.consume(rule.source.keys)
        if in_run:
            self.line("break")
        self.indent -= 2

    def coerce(self, coercer: Callable[[Any], Any]) -> None:
        """
        C{value = coercer(value)}, with the coercer's own shortcut for the texts vendors nearly
        always send inlined: text as it is for plain strings, digits for integers (then the
        attribute's enum and range), a dotted quad for IP addresses (then its length), and times
        through L{fast_to_epoch_ms}.
        """
        coerce = self.const(coercer)
        integer = getattr(coercer, "integer", None)
        dotted_quad = getattr(coercer, "dotted_quad", None)
        if coercer is _to_string:
            self.line(f"value = value if type(value) is str else {coerce}(value)")
        elif getattr(coercer, "items", None) is _to_string:  # an array of text: a list of texts kept as it is
            self.line(f"value = value.copy() if type(value) is list and value and TEXT.issuperset(map(type, value)) "
                      f"else {coerce}(value)")
        elif integer is not None:
            allowed, low, high = integer
            self.line("if type(value) is str and value.isdigit() and value.isascii():")
            self.line("    value = int(value)")
            self.line("elif type(value) is not int:  # (the coercer checks what it returns)")
            self.line(f"    value = {coerce}(value)")
            checks = ([f"value not in {self.const(allowed)}"] if allowed is not None else []) + (
                [f"not {self.const(low)} <= value <= {self.const(high)}"] if low is not None else [])
            if checks:
                self.line(f"if value is not INVALID and ({' or '.join(checks)}):")
                self.line("    value = INVALID")
        elif getattr(coercer, "epoch_ms", False):  # the time a vendor sent, as the time candidates read it
            self.line(f"value = {_epoch_ms('value')}")
            self.line("if value is None:")
            self.line("    value = INVALID")
        elif dotted_quad is not None:
            accepted, max_len = dotted_quad
            fits = "" if max_len is None else f" and len(value) <= {self.const(max_len)}"
            self.line(f"if not (type(value) is str and {self.const(accepted)}(value){fits}):")
            self.line(f"    value = {coerce}(value)")
        else:
            self.line(f"value = {coerce}(value)")

    def _constants(self) -> None:
        for constant in self.compiled.constants:
            value = self.const(constant.value)
            if isinstance(constant.value, (dict, list)):
                # what copy_json gives for a list or object of scalars (most constants): a shallow copy
                flat = not any(isinstance(item, (dict, list)) for item in
                               (constant.value.values() if isinstance(constant.value, dict) else constant.value))
                value = f"{value}.copy()" if flat else f"copy_json({value})"
            self.write(_steps(constant.write), constant.write, value)
            if constant.caption is not None:
                write_caption, caption = constant.caption
                self.write(_steps(write_caption), write_caption, self.const(caption))

    def _severity(self) -> None:
        """
        The first candidate whose value is in the map wins; else the first present one gives 99 Other.
        """
        compiled = self.compiled
        captions = self.const(compiled.severity_captions)
        if not compiled.severity_sources:
            self.line(f"event['severity_id'] = {SEVERITY_UNKNOWN}")
            self.line(f"event['severity'] = {captions}[{SEVERITY_UNKNOWN}]")
            return
        lookup, otherwise = self.const(compiled.severity_lookup), self.const(compiled.severity_otherwise)
        self.line("severity_id = None")
        self.line("first_raw = first_bit = None")
        self._first()
        for source in compiled.severity_sources:
            self._candidate(source.keys, compiled.reader)
            self.line(f"severity_id = {lookup}.get({self.fold('raw')}, {otherwise})")
            self.line("if severity_id is not None:")
            self.indent += 1
            self.consume(source.keys)
            self.line("event['severity_id'] = severity_id")
            self.line(f"event['severity'] = str(raw) if severity_id == {SEVERITY_OTHER} else {captions}[severity_id]")
            self.line("break")
            self.indent -= 1
            self.line("if first_raw is None:")
            self.line(f"    first_raw, first_bit = raw, {self.bit(source.keys)}")
            self.indent -= 1
        self._last()
        self.line("if severity_id is None:")
        self.line("    if first_raw is None:")
        self.line(f"        event['severity_id'] = {SEVERITY_UNKNOWN}")
        self.line(f"        event['severity'] = {captions}[{SEVERITY_UNKNOWN}]")
        self.line("    else:")
        self.line("        consumed |= first_bit")
        self.line(f"        event['severity_id'] = {SEVERITY_OTHER}")
        self.line("        event['severity'] = str(first_raw)")

    def _time(self) -> None:
        compiled = self.compiled
        if not compiled.time_sources:
            self.line("event['time'] = int(context.received_at * 1000)")
            return
        formats = self.const(compiled.time_formats)
        self.line("ms = first_time = None")
        self._first()
        for source in compiled.time_sources:
            self._candidate(source.keys, compiled.reader)
            self.line("if first_time is None:")
            self.line("    first_time = raw")
            self.line(f"ms = {_epoch_ms('raw', formats)}")
            self.line("if ms is not None:")
            self.indent += 1
            self.consume(source.keys)
            self.line("event['time'] = ms")
            self.line("metadata.setdefault('original_time', str(raw))")
            self.line("break")
            self.indent -= 2
        self._last()
        self.line("if ms is None:")
        self.line("    event['time'] = int(context.received_at * 1000)")
        self.line("    if first_time is not None:")
        self.line("        metadata.setdefault('original_time', str(first_time))")

    def _finding_defaults(self) -> None:
        """
        What 2001 and 2004 require (or expect) when the record did not provide it.
        """
        template = self.template
        shape = FINDING_SHAPES.get(template.class_uid)
        if shape is None:
            return
        object_name, status_id, status = shape
        captions = self.compiled.status_captions
        self.line(f"finding = event.setdefault({object_name!r}, {{}})")
        self.line("finding.setdefault('uid', event_uid)")
        self.line(f"finding.setdefault('title', event.get('message') or {self.const(template.product_name)})")
        self.line(f"if {status_id!r} not in event:")
        if self.compiled.activity_sources:
            self.line(f"    if activity_id == {ACTIVITY_CLOSE}:")
            self.line(f"        event[{status_id!r}] = {STATUS_RESOLVED}")
            self.line(f"        event[{status!r}] = {self.const(captions[STATUS_RESOLVED])}")
            self.line("    else:")
            self.line(f"        event[{status_id!r}] = {STATUS_NEW}")
            self.line(f"        event[{status!r}] = {self.const(captions[STATUS_NEW])}")
        else:
            default = STATUS_RESOLVED if template.activity_id == ACTIVITY_CLOSE else STATUS_NEW
            self.line(f"    event[{status_id!r}] = {default}")
            self.line(f"    event[{status!r}] = {self.const(captions[default])}")
        if template.class_uid == 2004:
            if self.compiled.activity_sources:
                self.line(f"if activity_id == {ACTIVITY_CREATE}:")
                self.line("    event.setdefault('is_alert', True)")
            elif template.activity_id == ACTIVITY_CREATE:
                self.line("event.setdefault('is_alert', True)")

    def _unmapped(self) -> None:
        """
        Everything of the record not consumed: L{leftovers} (the fast path L{leftovers_for} picks for
        the tree) over the tree of the paths consumed, made once per combination (C{consumed} is an
        int of bits): one comprehension when only top-level keys were consumed, the nested objects
        inlined when the tree is one level deep (CEF records), else a walk of the consumed parts only.
        """
        paths = self.paths

        @lru_cache(maxsize=TREES_CACHED)
        def tree_of(mask: int) -> tuple[Callable[[Any, ConsumedTree], Any], ConsumedTree]:
            tree = consumed_tree(tuple(keys for position, keys in enumerate(paths) if mask >> position & 1))
            return leftovers_for(tree), tree

        self.line(f"leave, tree = {self.const(tree_of)}(consumed)")
        self.line("left = leave(original, tree)")
        self.line("if left is not INVALID and left:")
        self.line("    if 'unmapped' in event:")
        self.line("        merge_missing(event['unmapped'], left)")
        self.line("    else:  # (left is a fresh copy: it can be the object itself)")
        self.line("        event['unmapped'] = left")


class _EntryBody(Body):
    """
    The body of a template with one variant and no extraction, made C{to_event} itself: no
    C{to_event} frame only to call it.
    """

    def prelude(self) -> None:
        self.line("def body(record, context):")
        self.indent += 1
        self.line("headers = context.headers or EMPTY")
        self.line("original = record")


def _epoch_ms(name: str, *formats: str) -> str:
    """
    The expression for L{to_epoch_ms} of the variable C{name}: epoch ms as an int (CEF records'
    time) is its own value, as the reference returns it, without the call.
    """
    call = ", ".join((name, *formats))
    return f"{name} if type({name}) is int and {EPOCH_MS[0]} <= {name} < {EPOCH_MS[1]} else fast_to_epoch_ms({call})"


def _steps(writer: Callable[..., None]) -> tuple[Step, ...]:
    return writer.steps  # type: ignore[attr-defined, no-any-return]

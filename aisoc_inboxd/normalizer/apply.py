"""
Apply a loaded template to one decoded record: the OCSF 1.8.0 event the pipeline publishes.

L{normalize} here is the reference interpreter of the rules below; the pipeline runs the function
generated from the same rules at load (L{codegen<aisoc_inboxd.normalizer.codegen>}), and a
differential test holds the two to the same events.

Pure and per-event cheap: every path, enum and conversion was resolved when the template loaded
(L{Compiled}); here we only read, convert and write. L{normalize_record} first unwraps the vendor's
envelope (L{Template.unwrap}: decoded JSON fields, control messages, batch lists); every source
value is read through the template's C{transforms}. Rules, in order:

  1. pick the class: the first C{class_field} candidate whose value is in C{classes} selects that
     class variant (and is consumed), else the template's own class; then stamp the class
     (class, category, type), the activity (C{activity_field}/C{activity_map},
     else C{activity_id}), the template's product, C{log_name} (the template id) and C{log_source}
     (the intake route); the template may override the last three;
  2. C{field_map}: a missing or null source is skipped; the first present source of a target wins;
     a value the target cannot hold (C{"abc"} for a port) is not mapped and stays in C{unmapped};
  3. C{constants}, then C{severity_field}/C{severity_map} (and the common severity words,
     L{severity<aisoc_inboxd.normalizer.severity>}): no severity value → 0 Unknown; a value
     in neither → 99 Other with C{severity} = the raw value (nothing is silently downgraded);
  4. C{time_field}: the first parseable candidate → C{time} (ms) and C{metadata.original_time}
     (raw, unless a C{field_map} entry already set it); none → the receive time;
  5. class defaults so the event validates (2001 C{state_id}/C{finding}, 2004
     C{status_id}/C{finding_info}/C{is_alert}): New, or Resolved for a Close activity;
  6. ingest stamps that templates never override (C{metadata.version}, C{uid}, C{tenant_uid},
     C{logged_time}, C{log_provider});
  7. everything of the record not consumed goes to C{unmapped} (nesting kept, nulls dropped), and
     the raw text to C{raw_data}.
"""
from __future__ import annotations

import json
from functools import lru_cache, partial
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from aisoc_inboxd.normalizer.coerce import INVALID, drop_nulls
from aisoc_inboxd.normalizer.extract import EXTRACTED, with_extracted
from aisoc_inboxd.normalizer.ocsf import SCHEMA_VERSION
from aisoc_inboxd.normalizer.paths import MISSING, get_source, is_header
from aisoc_inboxd.normalizer.severity import fold_severity
from aisoc_inboxd.normalizer.model import Compiled, Template
from aisoc_inboxd.normalizer.timeparse import to_epoch_ms
from aisoc_inboxd.normalizer.uids import new_uid

LOG_PROVIDER = "aisoc-inboxd"
SEVERITY_UNKNOWN = 0
SEVERITY_OTHER = 99
STATUS_NEW = 1
STATUS_RESOLVED = 4
# class -> (finding object, its status attribute); both are required or expected by OCSF 1.8.0
FINDING_SHAPES = {2001: ("finding", "state_id", "state"), 2004: ("finding_info", "status_id", "status")}
ACTIVITY_CREATE = 1
ACTIVITY_CLOSE = 3


#: the headers of a record that came with none
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class IngestContext(NamedTuple):
    """
    What the intake knows about a record besides its content. A named tuple: the pipeline makes
    one per record, at half the cost of a frozen dataclass.

    C{received_at} is epoch seconds; C{raw} is the record's own text for C{raw_data} (C{None}: the
    record re-serialised as JSON); C{headers} are the request's, by lowercase name, for C{header:}
    sources.
    """

    tenant_id: str
    route: str
    received_at: float
    raw: str | None = None
    headers: Mapping[str, str] = NO_HEADERS


def normalize_record(template: Template, record: dict[str, Any], context: IngestContext,
                     interpret: bool = False) -> list[dict[str, Any]]:
    """
    The OCSF events for one record as decoded from a body: none for a control message the template
    acknowledges, one per item of a C{records} batch, else one.

    Each event is made by the function generated for the template at load
    (L{codegen<aisoc_inboxd.normalizer.codegen>}), or with C{interpret} by L{normalize}, the
    reference it is tested against.
    """
    to_event = partial(normalize, template) if interpret else template.to_event
    # the whole record keeps its own text even when decode_json changed it; a batch item gets its own
    whole = context if context.raw is not None else context._replace(raw=json.dumps(record, ensure_ascii=False))
    if template.compiled.envelope.unwraps_nothing:
        return [to_event(record, whole)]
    return [to_event(item.data, whole if item.whole else context._replace(raw=None))
            for item in template.unwrap(record, context.headers)]


def normalize(template: Template, record: dict[str, Any], context: IngestContext) -> dict[str, Any]:
    """
    The OCSF event for C{record} under C{template}, by interpreting the compiled rules: the
    reference for the generated C{template.to_event}, which must give the same event.
    """
    original, record = record, with_extracted(template.compiled.extractions, record)
    consumed: list[tuple[str, ...]] = [] if record is original else [(EXTRACTED,)]
    template = _class_variant(template, record, consumed, context)
    compiled = template.compiled
    event = _class_stamp(template, compiled, context, _activity(template, compiled, record, context))
    metadata: dict[str, Any] = event["metadata"]
    headers = context.headers

    filled: set[str] = set()
    for rule in compiled.field_rules:
        if rule.target in filled:
            continue
        raw = rule.source.read(record, headers)
        if raw is MISSING or raw is None:
            continue
        value = rule.coerce(raw)
        if value is INVALID:
            continue
        rule.write(event, value)
        if rule.sibling is not None:  # 99 Other is captioned with the value as sent, before transforms
            caption = rule.captions.get(value) if value != SEVERITY_OTHER else None
            rule.sibling(event, caption or str(get_source(record, rule.source.keys, headers)))
        filled.add(rule.target)
        consumed.append(rule.source.keys)

    for constant in compiled.constants:
        constant.write(event, copy_json(constant.value))
        if constant.caption is not None:
            write_caption, caption = constant.caption
            write_caption(event, caption)

    _severity(event, compiled, record, consumed, context)
    _time(event, compiled, record, consumed, context)

    event_uid = new_uid()
    _finding_defaults(event, template, compiled, event_uid)
    metadata.update(
        version=SCHEMA_VERSION,
        uid=event_uid,
        tenant_uid=context.tenant_id,
        logged_time=int(context.received_at * 1000),
        log_provider=LOG_PROVIDER,
    )

    left = leftovers(original, consumed_tree(tuple(consumed)))
    if left is not INVALID and left:
        merge_missing(event.setdefault("unmapped", {}), left)
    event["raw_data"] = context.raw if context.raw is not None else json.dumps(original, ensure_ascii=False)
    return event


def _class_variant(template: Template, record: dict[str, Any], consumed: list[tuple[str, ...]],
                   context: IngestContext) -> Template:
    """
    The C{classes} variant named by the first C{class_field} candidate whose value is listed; else
    C{template} itself. The deciding source is consumed: the event's class says what it said.
    """
    compiled = template.compiled
    for source, raw in _scalars(compiled.class_sources, record, context):
        variant = compiled.variants.get(fold_severity(raw))
        if variant is not None:
            consumed.append(source.keys)
            return variant
    return template


def _scalars(sources: Iterable[Any], record: dict[str, Any],
             context: IngestContext) -> Iterator[tuple[Any, Any]]:
    """
    The candidate sources (class, activity, severity, time fields) that hold a scalar, with their
    value, in the template's order: absent, null, object and array values cannot name any of them.
    """
    for source in sources:
        raw = source.read(record, context.headers)
        if raw is not MISSING and raw is not None and not isinstance(raw, (dict, list)):
            yield source, raw


def _activity(template: Template, compiled: Compiled, record: dict[str, Any], context: IngestContext) -> int:
    """
    The first C{activity_field} candidate whose value is in C{activity_map}; else C{activity_id}.
    The vendor's word is not consumed: it stays in C{unmapped} unless a C{field_map} entry reads it.
    """
    for _, raw in _scalars(compiled.activity_sources, record, context):
        activity_id = compiled.activity_lookup.get(fold_severity(raw))
        if activity_id is not None:
            return activity_id
    return template.activity_id


def _class_stamp(template: Template, compiled: Compiled, context: IngestContext,
                 activity_id: int) -> dict[str, Any]:
    ocsf_class = compiled.ocsf_class
    activity_name = ocsf_class.activities[activity_id]
    return {
        "class_uid": ocsf_class.uid,
        "class_name": ocsf_class.caption,
        "category_uid": ocsf_class.category_uid,
        "category_name": ocsf_class.category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": ocsf_class.uid * 100 + activity_id,
        "type_name": f"{ocsf_class.caption}: {activity_name}",
        "metadata": {
            "product": {"vendor_name": template.vendor_name, "name": template.product_name},
            "log_name": template.id,
            "log_source": context.route,
        },
    }


def _severity(event: dict[str, Any], compiled: Compiled, record: dict[str, Any],
              consumed: list[tuple[str, ...]], context: IngestContext) -> None:
    """
    The first candidate whose value is in the map wins; else the first present one gives 99 Other.
    """
    first_present: tuple[tuple[str, ...], Any] | None = None
    for source, raw in _scalars(compiled.severity_sources, record, context):
        severity_id = compiled.severity_lookup.get(fold_severity(raw), compiled.severity_otherwise)
        if severity_id is not None:
            consumed.append(source.keys)
            caption = compiled.severity_captions[severity_id]
            event["severity_id"] = severity_id
            event["severity"] = str(raw) if severity_id == SEVERITY_OTHER else caption
            return
        first_present = first_present or (source.keys, raw)
    if first_present is None:
        event["severity_id"] = SEVERITY_UNKNOWN
        event["severity"] = compiled.severity_captions[SEVERITY_UNKNOWN]
        return
    consumed.append(first_present[0])
    event["severity_id"] = SEVERITY_OTHER
    event["severity"] = str(first_present[1])


def _time(event: dict[str, Any], compiled: Compiled, record: dict[str, Any],
          consumed: list[tuple[str, ...]], context: IngestContext) -> None:
    first_raw: Any = None
    for source, raw in _scalars(compiled.time_sources, record, context):
        first_raw = raw if first_raw is None else first_raw
        ms = to_epoch_ms(raw, compiled.time_formats)
        if ms is not None:
            consumed.append(source.keys)
            event["time"] = ms
            event["metadata"].setdefault("original_time", str(raw))
            return
    event["time"] = int(context.received_at * 1000)
    if first_raw is not None:
        event["metadata"].setdefault("original_time", str(first_raw))


def _finding_defaults(event: dict[str, Any], template: Template, compiled: Compiled,
                      event_uid: str) -> None:
    """
    Fill what 2001 and 2004 require (or expect) when the record did not provide it.
    """
    shape = FINDING_SHAPES.get(template.class_uid)
    if shape is None:
        return
    object_name, status_id, status = shape
    finding = event.setdefault(object_name, {})
    finding.setdefault("uid", event_uid)
    finding.setdefault("title", event.get("message") or template.product_name)
    if status_id not in event:
        default = STATUS_RESOLVED if event["activity_id"] == ACTIVITY_CLOSE else STATUS_NEW
        event[status_id] = default
        event[status] = compiled.status_captions[default]
    if template.class_uid == 2004 and event["activity_id"] == ACTIVITY_CREATE:
        event.setdefault("is_alert", True)


#: the consumed paths as a tree: key -> C{True} (consumed whole) or the subtree; a node of keys
#: that are all consumed whole is the frozenset of those keys
ConsumedTree = dict[str, Any] | frozenset[str]


@lru_cache(maxsize=1024)
def consumed_tree(paths: tuple[tuple[str, ...], ...]) -> ConsumedTree:
    """
    The consumed source paths as a tree (L{ConsumedTree}).

    Cached: the records of one template consume the same few combinations of paths. The tree is
    shared between events, so it is only ever read.
    """
    tree: dict[str, Any] = {}
    for path in paths:
        if is_header(path):
            continue
        node = tree
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if child is True:
                break
            node = child
        else:
            node[path[-1]] = True
    return _key_sets(tree)


def _key_sets(tree: dict[str, Any]) -> ConsumedTree:
    """
    C{tree} with every node whose keys are all consumed whole as the frozenset of its keys.
    """
    nodes = {key: sub if sub is True else _key_sets(sub) for key, sub in tree.items()}
    return frozenset(nodes) if all(sub is True for sub in nodes.values()) else nodes


#: the types of the values L{leftovers} (and its fast paths) keep as they are (exactly these: a
#: subclass is not JSON's, and goes to the general walk)
SCALAR_TYPES = frozenset({str, int, float, bool})


def leftovers(value: Any, consumed: ConsumedTree | None) -> Any:
    """
    C{value} minus the consumed subtrees and nulls; L{INVALID} when nothing is left of it.

    Only the parts of the record that hold consumed paths are walked here; the rest is copied by
    L{drop_nulls} (unmapped is most of a large vendor record). An object of which only whole keys
    were consumed is one comprehension (a flat record, CEF's extension keys).
    """
    if consumed is None:
        return drop_nulls(value)
    if type(consumed) is frozenset:
        if isinstance(value, dict):
            if SCALAR_TYPES.issuperset(map(type, value.values())):  # no nulls, nothing to copy: in C
                kept = value.copy()
                for key in consumed.intersection(value):
                    del kept[key]
                return kept or INVALID
            kept = {key: drop_nulls(item) if isinstance(item, (dict, list)) else item
                    for key, item in value.items() if item is not None and key not in consumed}
            return kept or INVALID
        consumed = dict.fromkeys(consumed, True)
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            sub = consumed.get(key)
            if sub is None:  # not read from: kept as it is, without nulls (a scalar needs no copy)
                if item is not None:
                    kept[key] = drop_nulls(item) if isinstance(item, (dict, list)) else item
            elif sub is not True:
                left = leftovers(item, sub)
                if left is not INVALID:
                    kept[key] = left
        return kept or INVALID
    if isinstance(value, list):
        kept_list = []
        each = {key: sub for key, sub in consumed.items() if not key.isdigit()}  # read from every item
        for index, item in enumerate(value):
            sub = consumed.get(str(index), each or None)
            if sub is True:
                continue
            left = drop_nulls(item) if sub is None else leftovers(item, sub)
            if left is not INVALID:
                kept_list.append(left)
        return kept_list or INVALID
    return drop_nulls(value)


def copy_json(value: Any) -> Any:
    """
    A copy of a constant's JSON value, so that no two events share a list or object; scalars are
    returned as they are. Cheaper than C{copy.deepcopy}, which keeps a memo for cycles JSON cannot have.
    """
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def merge_missing(target: dict[str, Any], extra: dict[str, Any]) -> None:
    """
    Add C{extra} into C{target} without replacing what the template already put there.
    """
    for key, value in extra.items():
        if key not in target:
            target[key] = value
        elif isinstance(target[key], dict) and isinstance(value, dict):
            merge_missing(target[key], value)

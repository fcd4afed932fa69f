"""
A CEF frame straight to its OCSF event (the fused path): per class variant of the CEF template, a
function generated from the same rules as the template's C{to_event} that reads the CEF header
fields and the extension where the frame reader left them, instead of from the C{cef} object of
the record L{carried_cef_record} builds, and writes C{unmapped.cef} from them at the end. What the
record holds besides C{cef} (kind, unpaired keys, initiator, file, times, syslog header) is made
by the same code as the record's (L{carry}); the extracted values are put in it, not in a copy.

The record path stays the reference: C{tests/test_cef_frame_events.py} holds the event of every
frame equal to what L{read_frame<aisoc_inboxd.formats.syslog_cef.read_frame>} and the template's
C{to_event} give, byte for byte. A template the fused code cannot read the same way (a rule on
the whole C{cef} object or below one of its keys, a caption read back from C{cef}, an envelope,
a class field other than C{kind}) has no fused function (L{fused_events} is None), nor has an
event whose extension repeats a header name (L{FusedEvents.event} is None): the record path reads
those.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from aisoc_inboxd.formats.cef_records import HEADER_NAMES, HEADER_KEYS, KINDS, carry, event_kind
from aisoc_inboxd.formats.syslog_cef import FrameParts
from aisoc_inboxd.normalizer.apply import NO_HEADERS, IngestContext, consumed_tree
from aisoc_inboxd.normalizer.codegen import TREES_CACHED, Body
from aisoc_inboxd.normalizer.extract import EXTRACTED
from aisoc_inboxd.normalizer.fastpaths import leftovers_for
from aisoc_inboxd.normalizer.model import Template
from aisoc_inboxd.normalizer.severity import fold_severity
from aisoc_inboxd.normalizer.transforms import Reader

#: the header's locals in a fused body, in the order of L{CefHeader}
_LOCALS = {key: f"h_{key}" for key in ("version", *HEADER_NAMES)}
_KIND = ("kind",)
_CEF = "cef"
_new = tuple.__new__  # (a named tuple without its generated __new__'s frame)


class FusedEvents:
    """
    One CEF template's fused functions, one per kind (the class variant the kind names, else the
    template's own class).
    """

    def __init__(self, template: Template) -> None:
        compiled = template.compiled
        prefix: tuple[tuple[str, ...], ...] = ((EXTRACTED,),) if compiled.extractions else ()
        base = _FusedBody(template, template, prefix).function()
        self._bodies: dict[str, Callable[..., dict[str, Any]]] = {}
        for kind in KINDS:
            variant = compiled.variants.get(fold_severity(kind))
            self._bodies[kind] = base if variant is None else _FusedBody(
                variant, template, prefix + (_KIND,)).function()

    def event(self, parts: FrameParts, tenant_id: str, route: str, received_at: float) -> dict[str, Any] | None:
        """
        The event of a frame's L{FrameParts}, as the template maps the frame's record; None when
        the extension repeats a header name (the record path keeps the header field then).
        """
        header, ext, text, now, local_tz, syslog, has_host, stamp, stamp_text = parts
        if not HEADER_KEYS.isdisjoint(ext):
            return None
        kind = event_kind(header, ext, has_host)
        data = {"kind": kind}
        carry(data, ext, ext, now, local_tz, syslog, stamp, stamp_text)
        context = _new(IngestContext, (tenant_id, route, received_at, text, NO_HEADERS))
        return self._bodies[kind](header, ext, data, context)


_FUSED: dict[int, tuple[Template, FusedEvents | None]] = {}


def fused_events(template: Template) -> FusedEvents | None:
    """
    The fused functions of C{template}, made at first use; None when it reads CEF records in a way
    they do not reproduce.
    """
    made = _FUSED.get(id(template))
    if made is None or made[0] is not template:
        made = _FUSED[id(template)] = (template, FusedEvents(template) if _fusable(template) else None)
    return made[1]


def _fusable(template: Template) -> bool:
    compiled = template.compiled
    if not compiled.envelope.unwraps_nothing or tuple(s.keys for s in compiled.class_sources) != (_KIND,):
        return False
    paths = [keys for extraction in compiled.extractions for keys in extraction.paths]
    for variant in (template, *compiled.variants.values()):
        rules = variant.compiled.field_rules
        if any(rule.sibling is not None and rule.source.keys[0] == _CEF for rule in rules):
            return False  # (its caption is read back from the record)
        paths += [source.keys for source in (*(rule.source for rule in rules), *variant.compiled.severity_sources,
                                             *variant.compiled.time_sources, *variant.compiled.activity_sources)]
    return all(len(keys) == 2 if keys[0] == _CEF else len(keys) == 1 or keys[0] != _KIND for keys in paths)


class _FusedBody(Body):
    """
    A class variant's generated body, C{body(header, ext, record, context)}: C{record} is the CEF
    record without its C{cef} object, whose keys are read from C{header} and C{ext}.
    """

    def __init__(self, template: Template, top: Template, consumed: tuple[tuple[str, ...], ...]) -> None:
        super().__init__(template, consumed)
        self.top = top

    def prelude(self) -> None:
        self.line("def body(header, ext, record, context):")
        self.indent += 1
        self.line("headers = context.headers or EMPTY")
        self.line(f"{', '.join(_LOCALS.values())} = header")
        self.line("h_severity = h_severity.strip()")
        if self.top.compiled.extractions:
            self.extract(self.top.compiled.extractions)

    def bind_extracted(self) -> None:
        self.line(f"record[{EXTRACTED!r}] = found")  # (the record is this body's own)

    def hoist(self, paths: Any) -> None:
        super().hoist(keys for keys in paths if keys[0] != _CEF)

    def read(self, keys: tuple[str, ...], reader: Reader, into: str) -> None:
        if keys[0] != _CEF or len(keys) != 2:
            super().read(keys, reader, into)
            return
        local = _LOCALS.get(keys[1])
        if local is None:
            self.line(f"{into} = ext.get({keys[1]!r}, MISSING)")
        elif keys[1] == "version":
            self.line(f"{into} = {local}")
        else:  # an empty header field is not in the record
            self.line(f"{into} = {local} or MISSING")
        self.transform(keys, reader, into)

    def _unmapped(self) -> None:
        """
        The record's leftovers in its key order: C{kind} (when not consumed), C{cef} (the header
        fields present, then the extension, less what was consumed), then the rest of the record.

        Each part is put in only when it was not consumed (one comprehension over the extension):
        copying the whole extension and then deleting the consumed keys one by one cost ~5 k
        instructions more a frame.
        """
        paths = self.paths

        @lru_cache(maxsize=TREES_CACHED)
        def tree_of(mask: int) -> tuple[frozenset[str], bool, Callable[[Any, Any], Any], Any]:
            chosen = [keys for position, keys in enumerate(paths) if mask >> position & 1]
            cef = frozenset(keys[1] for keys in chosen if keys[0] == _CEF)
            tree = consumed_tree(tuple(keys for keys in chosen if keys[0] != _CEF) + (_KIND,))
            return cef, _KIND not in chosen, leftovers_for(tree), tree

        self.line(f"cef_done, kind_kept, leave, tree = {self.const(tree_of)}(consumed)")
        self.line("left_cef = {} if 'version' in cef_done else {'version': h_version}")
        for key in HEADER_NAMES:
            self.line(f"if {_LOCALS[key]} and {key!r} not in cef_done:")
            self.line(f"    left_cef[{key!r}] = {_LOCALS[key]}")
        self.line("left_cef.update({key: value for key, value in ext.items() if key not in cef_done})")
        self.line("left = {'kind': record['kind']} if kind_kept else {}")
        self.line("if left_cef:")
        self.line(f"    left[{_CEF!r}] = left_cef")
        self.line("rest = leave(record, tree)")
        self.line("if rest is not INVALID:")
        self.line("    left.update(rest)")
        self.line("if left:")
        self.line("    if 'unmapped' in event:")
        self.line("        merge_missing(event['unmapped'], left)")
        self.line("    else:")
        self.line("        event['unmapped'] = left")

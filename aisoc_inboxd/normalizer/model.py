"""
The template model: what a loaded template is (L{Template}) and what loading resolved for the
per-event path (L{Compiled}, its field and constant rules).

Templates are built and checked by L{loader<aisoc_inboxd.normalizer.loader>}; applying one is
L{apply<aisoc_inboxd.normalizer.apply>} (the reference interpreter) or the function
L{codegen<aisoc_inboxd.normalizer.codegen>} generates for it at load.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from aisoc_inboxd.normalizer import envelope as _envelope
from aisoc_inboxd.normalizer.coerce import Coercer
from aisoc_inboxd.normalizer.envelope import Envelope, Unwrapped
from aisoc_inboxd.normalizer.extract import Extraction
from aisoc_inboxd.normalizer.ocsf import OcsfClass
from aisoc_inboxd.normalizer.paths import TargetWriter
from aisoc_inboxd.normalizer.transforms import Reader, Source

class TemplateError(ValueError):
    """
    A template that cannot be used; the message names the file and the key.
    """

    def __init__(self, source: Path | str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = str(source)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class FieldRule:
    """
    One compiled C{field_map} entry: where to read, where to write, how to convert.
    """

    source: Source
    target: str
    write: TargetWriter
    coerce: Coercer
    sibling: TargetWriter | None = None  # writes the enum's caption attribute, e.g. status for status_id
    captions: Mapping[Any, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConstantRule:
    """
    One compiled constant: where to write it, its already-converted value and enum caption.
    """

    write: TargetWriter
    value: Any
    caption: tuple[TargetWriter, str] | None = None


@dataclass(frozen=True)
class Compiled:
    """
    Everything L{normalize<aisoc_inboxd.normalizer.apply.normalize>} needs, resolved at load.
    """

    ocsf_class: OcsfClass
    severity_captions: Mapping[int, str]
    field_rules: tuple[FieldRule, ...]
    constants: tuple[ConstantRule, ...]
    severity_sources: tuple[Source, ...]
    severity_lookup: Mapping[str, int]  # casefolded source value -> severity_id
    severity_otherwise: int | None  # the severity_id of every other value (severity_map's "*")
    time_sources: tuple[Source, ...]
    status_captions: Mapping[int, str]  # 2001 state_id / 2004 status_id captions
    time_formats: tuple[str, ...] = ()
    activity_sources: tuple[Source, ...] = ()
    activity_lookup: Mapping[str, int] = field(default_factory=dict)  # casefolded value -> activity_id
    reader: Reader = field(default_factory=Reader)
    envelope: Envelope = field(default_factory=Envelope)
    extractions: tuple[Extraction, ...] = ()
    class_sources: tuple[Source, ...] = ()
    #: casefolded C{class_field} value -> the template compiled for that class (C{classes})
    variants: Mapping[str, "Template"] = field(default_factory=dict)


@dataclass(frozen=True)
class Template:
    """
    A loaded, validated template. C{field_map} and C{constants} hold the OCSF 1.8.0 targets (after
    the spec-shape rewrites); C{rewritten} records each rewrite as written → used.
    """

    id: str
    vendor_name: str
    product_name: str
    class_uid: int
    class_name: str
    activity_id: int
    field_map: Mapping[str, str | tuple[str, ...]]
    severity_field: tuple[str, ...]
    severity_map: Mapping[str, int]
    time_field: tuple[str, ...]
    constants: Mapping[str, Any]
    description: str | None
    source: Path | None
    rewritten: Mapping[str, str] = field(default_factory=dict)
    compiled: Compiled = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    activity_field: tuple[str, ...] = ()
    activity_map: Mapping[str, int] = field(default_factory=dict)
    time_formats: tuple[str, ...] = ()
    #: SHA-256 of the file the template was loaded from, so processes can tell whether they loaded the same
    digest: str = field(default="", repr=False, compare=False)
    #: C{to_event(record, context)}: the event for one unwrapped record, generated at load
    #: (L{codegen<aisoc_inboxd.normalizer.codegen>}); C{None} on a class variant, which the
    #: function of its template covers
    to_event: Callable[[dict[str, Any], Any], dict[str, Any]] = field(default=None, repr=False,  # type: ignore[assignment]
                                                                     compare=False)

    def idempotency_key(self, record: dict[str, Any], headers: Mapping[str, str]) -> str | None:
        """
        The delivery's natural idempotency key (C{idempotency_key}: a header such as
        C{X-GitHub-Delivery}, or a field such as SNS C{MessageId}), or C{None}.

        C{record} is a record as decoded from the body; C{headers} maps lowercase names to values.
        """
        compiled = self.compiled
        return _envelope.idempotency_key(compiled.envelope, compiled.reader, record, headers)

    def acknowledges(self, record: dict[str, Any], headers: Mapping[str, str]) -> bool:
        """
        Whether C{record} is a control message (C{acknowledge_when}) to answer 200 without publishing.
        """
        compiled = self.compiled
        data = _envelope.decoded(compiled.envelope, record)
        return _envelope.acknowledges(compiled.envelope, compiled.reader, data, headers)

    def unwrap(self, record: dict[str, Any], headers: Mapping[str, str]) -> list[Unwrapped]:
        """
        The records to normalize from one body record (C{decode_json}, C{acknowledge_when},
        C{records}): none for a control message, several for a batch envelope.
        """
        compiled = self.compiled
        return _envelope.unwrap(compiled.envelope, compiled.reader, record, headers)


class TemplateSet(Mapping[str, Template]):
    """
    Templates by id, as loaded from the configured directories.
    """

    def __init__(self, templates: Mapping[str, Template]) -> None:
        self._templates = dict(templates)

    def __getitem__(self, template_id: str) -> Template:
        return self._templates[template_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._templates)

    def __len__(self) -> int:
        return len(self._templates)

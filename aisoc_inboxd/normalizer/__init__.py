"""
Normalizer: YAML templates that map pushed security records to OCSF 1.8.0 events.

Load templates once at start-up (L{load_templates}: every mistake is a L{TemplateError} naming the
file and key), then call L{normalize_record} per record as decoded from a body (it unwraps the
vendor's envelope and calls L{normalize} for each event). L{validate_event} is our own OCSF 1.8.0
checker for tests and template tooling; it is not on the per-event path.
"""
from aisoc_inboxd.normalizer.apply import IngestContext, normalize, normalize_record
from aisoc_inboxd.normalizer.ocsf import validate_event
from aisoc_inboxd.normalizer.loader import load_template_file, load_templates
from aisoc_inboxd.normalizer.model import Template, TemplateError, TemplateSet

__all__ = [
    "IngestContext",
    "Template",
    "TemplateError",
    "TemplateSet",
    "load_template_file",
    "load_templates",
    "normalize",
    "normalize_record",
    "validate_event",
]

"""
Normalizer: YAML templates that map pushed security records to OCSF 1.8.0 events.

Load templates once at start-up (L{load_templates}: every mistake is a L{TemplateError} naming the
file and key), then call L{normalize} per record. L{validate_event} is our own OCSF 1.8.0 checker
for tests and template tooling; it is not on the per-event path.
"""
from aisoc_inboxd.normalizer.apply import IngestContext, normalize
from aisoc_inboxd.normalizer.ocsf import validate_event
from aisoc_inboxd.normalizer.template import (
    Template,
    TemplateError,
    TemplateSet,
    load_template_file,
    load_templates,
)

__all__ = [
    "IngestContext",
    "Template",
    "TemplateError",
    "TemplateSet",
    "load_template_file",
    "load_templates",
    "normalize",
    "validate_event",
]

"""
Template tooling for vendor onboarding (C{aisoc-inboxd templates check} and C{render}): validate
template files without starting the daemon, and show the OCSF a sample payload would become.

Both use exactly what the daemon uses (the loader, the body decoder, L{normalize_record}), so what
passes here behaves the same in production.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from aisoc_inboxd.formats.json_body import decode_json_records
from aisoc_inboxd.normalizer.apply import IngestContext, normalize_record
from aisoc_inboxd.normalizer.loader import TEMPLATE_SUFFIXES, load_template_file, load_templates
from aisoc_inboxd.normalizer.model import Template, TemplateError


def check_paths(paths: Iterable[Path]) -> tuple[list[Template], list[str]]:
    """
    Load every template file named, or found in a named directory; the good ones and the
    C{file: key: problem} message of each bad one (all of them, not only the first).
    """
    loaded: list[Template] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in TEMPLATE_SUFFIXES and p.is_file())
        elif path.exists():
            files = [path]
        else:
            problems.append(f"{path}: (file): no such file or directory")
            continue
        failed = False
        for file in files:
            try:
                loaded.append(load_template_file(file))
            except TemplateError as e:
                problems.append(str(e))
                failed = True
        if path.is_dir() and not failed:
            try:
                load_templates([path])  # what only a whole directory can get wrong: duplicate ids
            except TemplateError as e:
                problems.append(str(e))
    return loaded, problems


def render(template: Template, body: bytes, headers: Mapping[str, str] | None = None,
           tenant: str = "render", now: float | None = None) -> list[dict[str, Any]]:
    """
    The OCSF events C{body} (one JSON object, an array of them, or NDJSON) would become under
    C{template}: a dry run, nothing is published. Raises L{BodyError} for a body the daemon refuses.
    """
    received_at = time.time() if now is None else now
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    events: list[dict[str, Any]] = []
    for record in decode_json_records(body):
        context = IngestContext(tenant_id=tenant, route="render", received_at=received_at, raw=record.raw,
                                headers=lowered)
        events.extend(normalize_record(template, record.data, context))
    return events

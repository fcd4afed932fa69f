"""
The templates in force: the loaded set and the allowed ids (the spec's ALLOWED_TEMPLATE_IDS).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from aisoc_inboxd.config import ConfigError, Settings
from aisoc_inboxd.normalizer import Template, TemplateError, TemplateSet, load_templates

#: the templates shipped with the daemon: the repository's C{templates/} in a checkout, or the copy
#: installed under C{share/aisoc-inboxd/templates}
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def bundled_templates_dir() -> Path:
    if _CHECKOUT_TEMPLATES.is_dir():
        return _CHECKOUT_TEMPLATES
    import sysconfig

    installed = Path(sysconfig.get_path("data")) / "share" / "aisoc-inboxd" / "templates"
    return installed


def check_allowed(templates: TemplateSet, allowed: Iterable[str] | None) -> None:
    """
    Raise L{TemplateError} when C{templates.allowed} names a template that is not loaded: a typo there
    would otherwise refuse every token of that template, at run time, as "unknown template".
    """
    unknown = sorted(set(allowed or ()) - set(templates))
    if unknown:
        raise TemplateError("templates.allowed", repr(unknown[0]),
                            f"no such template is loaded (loaded: {', '.join(sorted(templates))})")


def check_template_uses(settings: Settings, catalog: "TemplateCatalog") -> None:
    """
    Raise L{ConfigError} naming the key when a template the config binds itself (C{cef.template} of an
    enabled CEF route, a syslog listener's C{template} and C{cef_template}) is not loaded and allowed.
    """
    uses = [("cef.template", settings.cef.template)] if settings.cef.tenant is not None else []
    for entry in settings.syslog.listeners:
        uses += [(f"syslog.listeners: {entry.name}: template", entry.template),
                 (f"syslog.listeners: {entry.name}: cef_template", entry.cef_template)]
    for key, template_id in uses:
        if catalog.get(template_id) is None:
            raise ConfigError(f"{key}: {template_id!r} is not a loaded and allowed template")


class TemplateCatalog:
    def __init__(self, templates: TemplateSet, allowed: list[str] | None) -> None:
        self._templates = templates
        self._allowed = None if allowed is None else frozenset(allowed)

    @classmethod
    def load(cls, directories: list[str], allowed: list[str] | None) -> "TemplateCatalog":
        """
        Load the bundled templates and then C{directories}; raises L{TemplateError} naming file and
        key, or naming an allowed id that is not loaded.
        """
        dirs = [bundled_templates_dir(), *(Path(d) for d in directories)]
        templates = load_templates(dirs)
        check_allowed(templates, allowed)
        return cls(templates, allowed)

    def replace_with(self, other: "TemplateCatalog") -> None:
        """
        Take C{other}'s templates and allowed ids in place (a reload), so every holder of this
        catalog (routes, pollers, the admin API) sees them at once.
        """
        self._templates, self._allowed = other._templates, other._allowed

    def digest(self) -> str:
        """
        A digest of the loaded files and the allowed ids: equal in two processes that loaded the same.
        """
        parts = [f"{t.id} {t.source} {t.digest}" for t in sorted(self._templates.values(), key=lambda t: t.id)]
        parts.append(f"allowed {sorted(self._allowed) if self._allowed is not None else None}")
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()

    def allowed(self, template_id: str) -> bool:
        return template_id in self._templates and (self._allowed is None or template_id in self._allowed)

    def get(self, template_id: str) -> Template | None:
        """
        The template, or C{None} when it is not loaded or not allowed.
        """
        return self._templates.get(template_id) if self.allowed(template_id) else None

    def ids(self) -> list[str]:
        return sorted(t for t in self._templates if self.allowed(t))

"""
The templates in force: the loaded set and the allowed ids (the spec's ALLOWED_TEMPLATE_IDS).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from aisoc_inboxd.config import ConfigError, Settings
from aisoc_inboxd.normalizer import Template, TemplateSet, load_templates
from aisoc_inboxd.normalizer.ocsf import ocsf_schema

#: the templates shipped with the daemon: the repository's C{templates/} in a checkout, or the copy
#: installed under C{share/aisoc-inboxd/templates}
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def bundled_templates_dir() -> Path:
    if _CHECKOUT_TEMPLATES.is_dir():
        return _CHECKOUT_TEMPLATES
    import sysconfig

    installed = Path(sysconfig.get_path("data")) / "share" / "aisoc-inboxd" / "templates"
    return installed


class TemplateCatalog:
    def __init__(self, templates: TemplateSet, allowed: list[str] | None) -> None:
        self._templates = templates
        self._allowed = None if allowed is None else frozenset(allowed)

    @classmethod
    def load(cls, directories: list[str], allowed: list[str] | None) -> "TemplateCatalog":
        """
        Load the bundled templates and then C{directories}; raises L{TemplateError} naming file and
        key, and L{ConfigError} when C{allowed} names a template that none of them has (a typo there
        would otherwise only show as tokens that cannot be minted).
        """
        dirs = [bundled_templates_dir(), *(Path(d) for d in directories)]
        templates = load_templates(dirs)
        unknown = [template_id for template_id in allowed or () if template_id not in templates]
        if unknown:
            raise ConfigError(f"templates.allowed: unknown template id{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))} (not bundled nor in templates.directories)")
        return cls(templates, allowed)

    @classmethod
    def load_to_serve(cls, directories: list[str], allowed: list[str] | None) -> "TemplateCatalog":
        """
        L{load} in a daemon process, which then lets the OCSF schema go: compiling the templates
        needs it (10 MiB of parsed JSON), running them does not, and each of the daemon's processes
        would hold its own copy for good. A reload reads it again, and lets it go again.
        """
        catalog = cls.load(directories, allowed)
        ocsf_schema.cache_clear()
        return catalog

    def check_in_use(self, settings: Settings) -> None:
        """
        Raise L{ConfigError}, naming the key, unless every template C{settings} names for intake
        without a token (the CEF route, each syslog listener) is loaded and allowed. Start-up and a
        reload check the same.
        """
        uses = [("cef.template", settings.cef.template)] if settings.cef.tenant is not None else []
        for index, listener in enumerate(settings.syslog.listeners):
            uses += [(f"syslog.listeners[{index}].template", listener.template),
                     (f"syslog.listeners[{index}].cef_template", listener.cef_template)]
        for key, template_id in uses:
            if template_id not in self._templates:
                raise ConfigError(f"{key}: no template {template_id!r} is loaded")
            if not self.allowed(template_id):
                raise ConfigError(f"{key}: template {template_id!r} is not in templates.allowed")

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

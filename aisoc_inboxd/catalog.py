"""
The templates in force: the loaded set and the allowed ids (the spec's ALLOWED_TEMPLATE_IDS).
"""
from __future__ import annotations

from pathlib import Path

from aisoc_inboxd.normalizer import Template, TemplateSet, load_templates

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
        Load the bundled templates and then C{directories}; raises L{TemplateError} naming file and key.
        """
        dirs = [bundled_templates_dir(), *(Path(d) for d in directories)]
        return cls(load_templates(dirs), allowed)

    def replace_with(self, other: "TemplateCatalog") -> None:
        """
        Take C{other}'s templates and allowed ids in place (a reload), so every holder of this
        catalog (routes, pollers, the admin API) sees them at once.
        """
        self._templates, self._allowed = other._templates, other._allowed

    def allowed(self, template_id: str) -> bool:
        return template_id in self._templates and (self._allowed is None or template_id in self._allowed)

    def get(self, template_id: str) -> Template | None:
        """
        The template, or C{None} when it is not loaded or not allowed.
        """
        return self._templates.get(template_id) if self.allowed(template_id) else None

    def ids(self) -> list[str]:
        return sorted(t for t in self._templates if self.allowed(t))

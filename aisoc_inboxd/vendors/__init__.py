"""
Vendor protocols that a declarative template cannot hold (today: AWS SNS signatures and
subscription confirmations), behind one seam the token routes call before publishing.
"""
from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.interfaces import IReactorTime

from aisoc_inboxd.config import VendorSettings
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.normalizer import Template
from aisoc_inboxd.vendors.sns import SnsGate, SnsOptions, UrlPolicy

__all__ = ["SnsGate", "SnsOptions", "UrlPolicy", "VendorGate", "build_vendor_gate"]


class VendorGate:
    """
    Runs the vendor checks that apply to a request's template; raises a L{Refused} to refuse it.
    """

    def __init__(self, sns: SnsGate | None = None, sns_templates: frozenset[str] = frozenset()) -> None:
        self._sns = sns
        self._sns_templates = sns_templates

    async def screen(self, template: Template, records: Sequence[Record]) -> None:
        if self._sns is not None and template.id in self._sns_templates:
            await self._sns.screen(records)

    async def screen_sns(self, envelope: dict[str, Any]) -> None:
        """
        Check one SNS envelope that reached a route by another template (SES on the e-mail route).
        """
        if self._sns is not None:
            await self._sns.screen([Record(envelope, "")])


def build_vendor_gate(settings: VendorSettings, reactor: IReactorTime) -> VendorGate:
    """
    The gate for C{settings} (the C{vendors} section), fetching over treq on C{reactor}.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    sns = settings.sns
    options = SnsOptions(verify_signatures=sns.verify_signatures,
                         auto_confirm_topics=frozenset(sns.auto_confirm_topics))
    gate = SnsGate(options, HTTPClient(Agent(reactor)), reactor, timeout=sns.timeout)
    return VendorGate(gate, frozenset(sns.templates))

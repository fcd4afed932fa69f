"""
The one rule for tenant ids, checked wherever a tenant comes into being: a token minted (CLI and
admin API), an IMAP connector added, a syslog listener or the CEF route configured.

A tenant id travels into URLs (C{/v1/admin/tenants/{tenant}/…}), Kafka message keys and headers,
log lines and OCSF C{metadata.tenant_uid}, so it is kept to characters that need no quoting anywhere.
"""
from __future__ import annotations

import re

RULE = "1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class InvalidTenant(ValueError):
    """
    A tenant id that breaks L{RULE}; the message names the id and the rule.
    """


def check_tenant_id(tenant_id: str) -> str:
    """
    C{tenant_id} when it follows L{RULE}.

    @raise InvalidTenant: otherwise.
    """
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise InvalidTenant(f"invalid tenant id {tenant_id!r}: a tenant id is {RULE}")
    return tenant_id

"""
Where an HTTP request comes from: the peer, or — only when the peer is a trusted proxy (a load
balancer) — the right-most C{X-Forwarded-For} address that is not itself a trusted proxy (entries
further left were written by the client and prove nothing).

Used for the per-client budget of unknown-token lookups and the request log line (C{http.trusted_proxies}),
and for the CEF route's allowlist (C{cef.trusted_proxies}).
"""
from __future__ import annotations

import ipaddress
from typing import Sequence

from twisted.web.server import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def inside(address: Address, nets: Sequence[Network]) -> bool:
    return any(address in network for network in nets)


def client_address(peer: str, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]) -> Address | None:
    """
    The client's address: the peer's, unless the peer is a trusted proxy, in which case the
    right-most C{X-Forwarded-For} entry that is not a trusted proxy. None when an address that
    decides is unreadable.
    """
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    chain = [entry.strip() for value in forwarded_for for entry in value.split(",")]
    while inside(address, trusted_proxies) and chain:
        try:
            address = ipaddress.ip_address(chain.pop())
        except ValueError:
            return None
    return address


def forwarded_for(request: Request) -> list[str]:
    return [v.decode("latin-1") for v in request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])]


def peer_host(request: Request) -> str | None:
    """
    The address of the connection's other end (behind a proxy, the proxy's), or C{None}.
    """
    return getattr(request.getClientAddress(), "host", None)


class ClientAddresses:
    """
    The client address of requests, believing the C{X-Forwarded-For} of C{trusted_proxies} only.
    """

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        self._proxies = networks(trusted_proxies)

    def of(self, request: Request) -> str | None:
        """
        The client's address as text; the peer's when no trusted proxy forwarded one (or the one it
        forwarded is unreadable).
        """
        peer = peer_host(request)
        if peer is None or not self._proxies:
            return peer
        client = client_address(peer, forwarded_for(request), self._proxies)
        return peer if client is None else str(client)

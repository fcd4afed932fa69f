"""
Guarding the status page's one change (its redeliver button) against cross-site request forgery.

The page has no script and the browser authenticates it with HTTP Basic credentials, which it
re-sends to this origin with a form posted from any site (that is why the admin API takes Basic
credentials for reads only). OWASP's CSRF cheat sheet names the defence for such a page: a
synchronizer token in a hidden form field (a custom request header would need script, and there is
no session cookie that SameSite or a double-submit cookie could use), checked on the server, plus
verifying the request's origin with standard headers as defence in depth. Its stateless form, the
"HMAC-based token", fits a daemon with no session store:

- a token is the time it was made and HMAC-SHA256, under a random secret of this process, of that
  time and the admin key: another site cannot read the page, so it cannot know one; the daemon
  accepts one it made for this admin key within the last L{TOKEN_LIFETIME} seconds, compared with
  L{hmac.compare_digest} (a restart or a new admin key makes older pages' tokens stale);
- the POST's C{Origin} (without one, its C{Referer}) must name the host (and port) the request was
  sent to, its C{Host}; a request with neither is refused too. The scheme is not compared, so a TLS
  proxy in front (which must pass C{Host} on) does not refuse the page's own forms. The page's
  C{Referrer-Policy: same-origin} lets the browser send them to itself.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from urllib.parse import urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

#: seconds a page's form may be posted after the page was made
TOKEN_LIFETIME = 3600
#: the hidden field that carries the token
TOKEN_FIELD = "csrf"


class FormGuard:
    """
    Makes the anti-CSRF token of each status page and says why a posted form is refused, if it is.
    """

    def __init__(self, api_key: bytes, clock: IReactorTime, secret: bytes | None = None) -> None:
        self._api_key = api_key
        self._clock = clock
        self._secret = secret if secret is not None else os.urandom(32)

    def token(self) -> str:
        """
        A token for a page made now.
        """
        issued = str(int(self._clock.seconds()))
        return f"{issued}.{self._mac(issued)}"

    def refusal(self, request: Request, token: str) -> str | None:
        """
        Why the form C{request} posted with C{token} is not from this daemon's own page, or C{None}
        when it is.
        """
        host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
        for header in ("Origin", "Referer"):
            sent = request.getHeader(header.lower().encode("ascii"))
            if sent is not None:
                if urlsplit(sent.decode("latin-1")).netloc.lower() != host or not host:
                    return f"the form was posted from another site ({header})"
                break
        else:
            return "the request names no Origin or Referer"
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(mac.encode("ascii", "replace"),
                                                           self._mac(issued).encode("ascii")):
            return "the form's anti-CSRF token is missing or wrong: reload the status page"
        if not 0 <= self._clock.seconds() - int(issued) <= TOKEN_LIFETIME:
            return "the page is more than an hour old: reload the status page"
        return None

    def _mac(self, issued: str) -> str:
        return hmac.new(self._secret, issued.encode("ascii") + b"\0" + self._api_key, hashlib.sha256).hexdigest()

"""
Syslog intake: RFC 6587 stream framing and RFC 5424/3164 header parsing as pure code, plus the Twisted
protocols that feed them.
"""

"""
The HTTP side: the site (body limits, redacted access log), the resource tree and one module per route.
"""

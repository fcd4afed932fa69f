"""
Intake: what every way in (HTTP routes, syslog listeners, the IMAP connector) does between decoded
records and the pipeline, in its own words: bind records to a tenant and template, run the checks
(signature, rate limit, idempotency), deliver, or refuse (L{refusals.Refused}, an outcome and a
message that each transport puts in its own terms).

Nothing here knows HTTP or syslog: web maps refusals to statuses, syslog counts them as drops.
"""

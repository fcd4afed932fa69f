from twisted.application.service import ServiceMaker

aisocInboxd = ServiceMaker(
    "AISOC inbox daemon", "aisoc_inboxd.tap",
    "Universal capture: HTTPS webhooks, email, CEF over syslog and Splunk HEC into OCSF.", "aisoc-inboxd")

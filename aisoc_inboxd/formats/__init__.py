"""
Pure decoders for the bodies the intakes receive (CEF, NDJSON, HEC envelopes, email relays): bytes in,
records out, no reactor and no I/O, so each is tested with tables and property tests.
"""

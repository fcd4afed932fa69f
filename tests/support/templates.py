"""
A small valid template for tests that add templates to a directory the daemon reads.
"""
from __future__ import annotations


def detection_template(template_id: str, product: str = "Acme Alerts") -> str:
    """
    The YAML of a template C{template_id} (its file must be C{<template_id>.yaml}) mapping
    C{{"alert": {"id", "name"}}} to a Detection Finding.
    """
    return f"""id: {template_id}
vendor_name: Acme
product_name: {product}
class_uid: 2004
class_name: Detection Finding
activity_id: 1
field_map:
  alert.id: finding_info.uid
  alert.name: finding_info.title
"""

"""Identification limits as configuration (`[identify]`): a model light to import (no parser loaded)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IdentifyLimits(BaseModel):
    """Bounds that protect identification from hostile inputs (the caller bounds the flow size)."""

    model_config = ConfigDict(extra="forbid")

    max_zip_entries: int = Field(1000, ge=1)
    max_zip_uncompressed_bytes: int = Field(500_000_000, ge=1)
    max_zip_ratio: int = Field(200, ge=1)  # compression ratio above which an entry is a bomb
    zip_ratio_min_bytes: int = Field(1_000_000, ge=0)  # smaller entries are never bombs, whatever the ratio
    max_xml_depth: int = Field(256, ge=2, le=256)  # libxml2 refuses deeper documents anyway (no huge_tree)
    max_pdf_attachments: int = Field(100, ge=1)
    max_pdf_xml_bytes: int = Field(50_000_000, ge=1)  # declared and actual size of the embedded invoice XML
    flat_layout: str = "cpp-flat-v1"

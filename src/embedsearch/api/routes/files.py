"""POST /text/pdf: the text layer of an uploaded PDF, for clients (the search page) that store
it as a document next. Stores nothing; a write key is needed all the same (it costs CPU)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from pydantic import BaseModel

from embedsearch.api.errors import ApiError
from embedsearch.api.schemas import ERROR_RESPONSES

router = APIRouter(tags=["documents"])

_PDF_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class PdfText(BaseModel):
    text: str


@router.post(
    "/text/pdf", response_model=PdfText, responses=ERROR_RESPONSES, openapi_extra=_PDF_BODY
)
async def pdf_text(request: Request) -> PdfText:
    """The PDF's text layer (pages separated by blank lines), as `embedsearch ingest` reads it.
    Send the file's bytes with Content-Type: application/pdf."""
    from embedsearch.ingest.readers import pdf_text as read_pdf

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/pdf":
        raise ApiError(
            415, "unsupported_media_type", "send the PDF's bytes as application/pdf", "body"
        )
    data = await request.body()
    try:
        text = await asyncio.to_thread(read_pdf, data)  # pypdf is pure Python: off the loop
    except ValueError as exc:
        raise ApiError(422, "invalid_input", str(exc), "body") from None
    if not text.strip():
        raise ApiError(
            422, "invalid_input", "the PDF has no text layer (a scan needs OCR first)", "body"
        )
    return PdfText(text=text)

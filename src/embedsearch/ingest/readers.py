"""Turn files into documents: .txt, .md, .html, .pdf, and BEIR-format .jsonl corpora.

Each problem is reported per file (or per line of a .jsonl) as a ReadFailure; nothing raises."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from embedsearch.core.documents import DocumentInput

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".jsonl"}


@dataclass(frozen=True)
class ReadFailure:
    source: str
    reason: str


@dataclass(frozen=True)
class Source:
    path: Path
    document_id: str  # for files: the path relative to the folder given (stable across runs)


def discover(
    paths: Sequence[Path], pattern: str = "**/*"
) -> tuple[list[Source], list[ReadFailure]]:
    """Files to ingest under the given files and folders, in a stable order."""
    sources: list[Source] = []
    failures: list[ReadFailure] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.glob(pattern) if p.is_file()):
                if file.suffix.lower() in SUFFIXES:
                    sources.append(Source(file, file.relative_to(path).as_posix()))
        elif path.is_file():
            if path.suffix.lower() in SUFFIXES:
                sources.append(Source(path, path.name))
            else:
                failures.append(ReadFailure(str(path), f"unsupported file type {path.suffix!r}"))
        else:
            failures.append(ReadFailure(str(path), "no such file or folder"))
    return sources, failures


def count_documents(source: Source) -> int:
    if source.path.suffix.lower() == ".jsonl":
        try:
            with source.path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except OSError:
            return 1
    return 1


def read(source: Source) -> Iterator[DocumentInput | ReadFailure]:
    suffix = source.path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_beir(source)
        return
    try:
        if suffix == ".pdf":
            text = pdf_text(source.path)
        else:
            text = _decode(source.path.read_bytes())
            if suffix in HTML_SUFFIXES:
                text = _html_text(text)
    except (OSError, ValueError) as exc:
        yield ReadFailure(str(source.path), _reason(exc))
        return
    if not text.strip():
        what = "no extractable text (a scanned PDF?)" if suffix == ".pdf" else "empty document"
        yield ReadFailure(str(source.path), what)
        return
    yield DocumentInput(
        source.document_id, text, {"source": source.document_id, "type": suffix[1:]}
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValueError) and str(exc):
        return str(exc)[:200]  # our own messages
    return f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None


_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head"})
_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "br",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "section",
        "article",
        "pre",
        "blockquote",
    ]
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP_TAGS and self._skipping:
            self._skipping -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self._skipping:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    body = "".join(parser.parts)
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n")]
    text = "\n\n".join(p for p in paragraphs if p)
    title = " ".join(parser.title.split())
    return f"{title}\n\n{text}" if title and not text.startswith(title) else text


def pdf_text(pdf: Path | bytes) -> str:
    """The text layer of a PDF (a file, or its bytes), pages separated by blank lines; raises
    ValueError for a file pypdf cannot read."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf logs what it repairs ("EOF marker not found") and warns; a file it cannot read
    # is reported once, as a failure of that file, so its own messages stay out of the way.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(pdf) if isinstance(pdf, bytes) else pdf)
            pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise ValueError(f"unreadable PDF: {exc}") from None
    except Exception as exc:  # pypdf raises many types on damaged files
        raise ValueError(f"unreadable PDF: {_reason(exc)}") from None
    return "\n\n".join(page.strip() for page in pages if page.strip())


def _read_beir(source: Source) -> Iterator[DocumentInput | ReadFailure]:
    """BEIR corpus: one JSON object per line with _id, title (optional) and text."""
    try:
        handle = source.path.open("rb")
    except OSError as exc:
        yield ReadFailure(str(source.path), _reason(exc))
        return
    with handle:
        for number, raw in enumerate(handle, 1):
            where = f"{source.path}:{number}"
            if not raw.strip():
                continue
            try:
                record = json.loads(_decode(raw))
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                doc_id, title, body = (
                    record.get("_id"),
                    record.get("title") or "",
                    record.get("text"),
                )
                if not isinstance(doc_id, str) or not doc_id or not isinstance(body, str):
                    raise ValueError("needs string fields _id and text")
                if not isinstance(title, str):
                    raise ValueError("title must be a string")
            except ValueError as exc:
                yield ReadFailure(where, _reason(exc))
                continue
            text = f"{title} {body}".strip() if title else body
            if not text.strip():
                yield ReadFailure(where, "empty document")
                continue
            metadata = (
                {"source": source.document_id, "title": title}
                if title
                else {"source": source.document_id}
            )
            yield DocumentInput(doc_id, text, metadata)

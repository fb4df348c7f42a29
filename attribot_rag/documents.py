"""A folder of a team's own documents (txt, md, html, pdf) as index passages.

``read_documents(folder)`` reads every supported file under ``folder`` (subfolders too,
hidden files and folders left out) with LlamaIndex's ``SimpleDirectoryReader``: text and
Markdown as UTF-8 text, HTML through BeautifulSoup (scripts and styles dropped, one line per
block element), PDF through pypdf (one document per page). Each document is cut into chunks
by LlamaIndex's sentence-aware ``SentenceSplitter``, and each chunk becomes a passage whose
metadata say where it came from:

``file``        the path relative to ``folder`` (``policies/travel.pdf``)
``file_type``   ``txt``, ``md``, ``html`` or ``pdf``
``page``        PDF only: the page number, from 1
``start_char``, ``end_char``  the chunk's span in the file's text (in the page's text for
                a PDF), so ``text[start_char:end_char] == passage.text``
``chunk``       the chunk's position in the file, from 0

The passage id is ``<file>:<chunk>`` and the title the file name (``travel.pdf, page 2`` for a
PDF), so every citation names its file. ``build_docs_index`` embeds the passages into an
index folder like ``attribot-rag index --corpus`` writes (``attribot-rag index --docs DIR``).

Needs the ``docs`` extra: ``pip install 'attribot-rag[docs]'`` (llama-index-core, pypdf,
beautifulsoup4). Nothing is downloaded: the splitter's tokenizer and sentence rules ship in
llama-index-core.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import InputError
from .sources import Passage

log = logging.getLogger(__name__)

# Suffix (lower case) -> file_type. Text and Markdown are read as they are.
SUPPORTED_SUFFIXES = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
# Chunk size in the splitter's tokens (tiktoken cl100k, bundled with llama-index-core): 200
# stays inside the 256 word pieces all-MiniLM-L6-v2 embeds (it truncates longer texts), and
# four retrieved chunks make a prompt of about a thousand tokens.
DEFAULT_CHUNK_SIZE = 200
DEFAULT_CHUNK_OVERLAP = 20
_EXTRA_HINT = "pip install 'attribot-rag[docs]'"


class DocumentReadError(InputError):
    """A file of the documents folder could not be read (a corrupt PDF, text not in UTF-8)."""


# --------------------------------------------------------------------------- readers


def _base_reader() -> type:
    try:
        from llama_index.core.readers.base import BaseReader
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError(f"reading a documents folder needs llama-index-core: {_EXTRA_HINT}") from exc
    return BaseReader


def _document(text: str, metadata: dict[str, Any]) -> Any:
    from llama_index.core import Document

    return Document(text=text, metadata=metadata)


def _pdf_reader() -> Any:
    class PdfPages(_base_reader()):  # type: ignore[misc]
        """One document per page with its number (``page``), text by pypdf."""

        def load_data(self, file: Path, extra_info: dict | None = None, **_: Any) -> list:
            try:
                from pypdf import PdfReader
                from pypdf.errors import PyPdfError
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError(f"reading PDF files needs pypdf: {_EXTRA_HINT}") from exc
            name = (extra_info or {}).get("file", str(file))
            pypdf_log = logging.getLogger("pypdf")
            level = pypdf_log.level
            pypdf_log.setLevel(logging.ERROR)  # its repair notes; a failure is reported below
            try:
                reader = PdfReader(str(file))
                if reader.is_encrypted and not reader.decrypt(""):
                    raise DocumentReadError(f"cannot read {name}: the PDF is encrypted with a password")
                pages = [page.extract_text() or "" for page in reader.pages]
            except DocumentReadError:
                raise
            except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                    OSError, RecursionError) as exc:
                raise DocumentReadError(
                    f"cannot read {name}: not a readable PDF ({type(exc).__name__}: {exc})"
                ) from exc
            finally:
                pypdf_log.setLevel(level)
            return [
                _document(_clean_pdf_text(text), {**(extra_info or {}), "page": number})
                for number, text in enumerate(pages, 1)
            ]

    return PdfPages()


def _clean_pdf_text(text: str) -> str:
    # pypdf ends lines where the page does; keep the paragraph breaks, drop trailing blanks.
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Elements after which the text breaks: one line per paragraph, item, heading or row.
_BLOCKS = (
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
    "ol", "p", "pre", "section", "table", "tr", "ul",
)


def _html_reader() -> Any:
    class HtmlText(_base_reader()):  # type: ignore[misc]
        """The visible text of a page (``<title>`` kept as ``html_title``)."""

        def load_data(self, file: Path, extra_info: dict | None = None, **_: Any) -> list:
            try:
                from bs4 import BeautifulSoup
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError(f"reading HTML files needs beautifulsoup4: {_EXTRA_HINT}") from exc
            # Bytes: BeautifulSoup finds the encoding (meta charset, BOM, or a guess).
            soup = BeautifulSoup(Path(file).read_bytes(), "html.parser")
            metadata = dict(extra_info or {})
            if soup.title and soup.title.get_text(strip=True):
                metadata["html_title"] = soup.title.get_text(" ", strip=True)
            for tag in soup(["script", "style", "noscript", "template", "head", "svg", "nav"]):
                tag.decompose()
            for br in soup.find_all("br"):
                br.replace_with("\n")
            for tag in soup.find_all(_BLOCKS):
                tag.insert_before("\n")
                tag.insert_after("\n")
            for cell in soup.find_all(["td", "th"]):
                cell.insert_after(" ")
            return [_document(_clean_html_text(soup.get_text()), metadata)]

    return HtmlText()


def _clean_html_text(text: str) -> str:
    lines = [re.sub(r"[ \t\f\v\r\xa0]+", " ", line).strip() for line in text.split("\n")]
    # One blank line between blocks: a paragraph break for the splitter and the prompt.
    return "\n\n".join(line for line in lines if line)


# --------------------------------------------------------------------------- folder


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_documents(folder: str | Path) -> list[Path]:
    """The supported files under ``folder``, sorted; a clear InputError when there are none."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"documents folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise InputError(
            f"{str(root)!r} is a file, not a folder: --docs takes a folder of documents "
            "(for a JSONL corpus use --corpus)"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _is_hidden(p, root))
    if not files:
        raise InputError(f"documents folder {str(root)!r} is empty")
    supported = [p for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES]
    others = Counter(p.suffix.lower() or "(no suffix)" for p in files if p not in supported)
    kinds = ", ".join(f"{n} {s}" for s, n in sorted(others.items()))
    if not supported:
        raise InputError(
            f"documents folder {str(root)!r} has no file of a supported type "
            f"({_supported_names()}); it holds {len(files)} other file(s): {kinds}"
        )
    if others:
        log.warning("skipped %d file(s) of unsupported types in %s: %s", sum(others.values()), root, kinds)
    return supported


def _supported_names() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


class _NoReadersFileNote(logging.Filter):
    # SimpleDirectoryReader warns on every file that llama-index-readers-file is missing;
    # the pdf and html readers here replace it (it pins pandas<3), so the note misleads.
    def filter(self, record: logging.LogRecord) -> bool:
        return "llama-index-readers-file" not in record.getMessage()


_READER_LOG = "llama_index.core.readers.file.base"


def load_documents(folder: str | Path) -> list[Any]:
    """LlamaIndex ``Document``s of the supported files (one per PDF page), with ``file`` and
    ``file_type`` metadata. A file that cannot be read raises DocumentReadError naming it."""
    root = Path(folder)
    files = list_documents(root)
    try:
        from llama_index.core import SimpleDirectoryReader
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError(f"reading a documents folder needs llama-index-core: {_EXTRA_HINT}") from exc

    def metadata(path: str) -> dict[str, Any]:
        p = Path(path)
        return {"file": p.relative_to(root).as_posix(), "file_type": SUPPORTED_SUFFIXES[p.suffix.lower()]}

    reader_log = logging.getLogger(_READER_LOG)
    if not any(isinstance(f, _NoReadersFileNote) for f in reader_log.filters):
        reader_log.addFilter(_NoReadersFileNote())
    pdf, html = _pdf_reader(), _html_reader()
    extractors = {".pdf": pdf, ".html": html, ".htm": html}
    reader = SimpleDirectoryReader(
        input_files=[str(p) for p in files],
        file_extractor=extractors,
        file_metadata=metadata,
        encoding="utf-8",
        errors="strict",
        raise_on_error=True,
    )
    documents: list[Any] = []
    # File by file (SimpleDirectoryReader.load_data would not say which file failed).
    for path in reader.input_files:
        name = Path(path).relative_to(root).as_posix()
        try:
            docs = reader.load_file(
                input_file=path,
                file_metadata=reader.file_metadata,
                file_extractor=reader.file_extractor,
                encoding=reader.encoding,
                errors=reader.errors,
                raise_on_error=True,
            )
        except ImportError as exc:
            raise InputError(f"cannot read {name}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise DocumentReadError(f"cannot read {name}: not UTF-8 text ({exc})") from exc
        except OSError as exc:
            raise DocumentReadError(f"cannot read {name}: {exc.strerror or exc}") from exc
        except Exception as exc:  # the reader's error, wrapped by SimpleDirectoryReader
            cause = exc.__cause__ or exc
            if isinstance(cause, InputError):
                raise cause from None
            raise DocumentReadError(f"cannot read {name}: {type(cause).__name__}: {cause}") from exc
        documents.extend(docs)
    return documents


def read_documents(
    folder: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Passage]:
    """The chunks of every supported file under ``folder`` as passages (see the module doc)."""
    if not isinstance(chunk_size, int) or chunk_size < 20:
        raise InputError(f"the chunk size must be an integer of at least 20 tokens, got {chunk_size!r}")
    if not isinstance(chunk_overlap, int) or not 0 <= chunk_overlap < chunk_size:
        raise InputError(
            f"the chunk overlap must be an integer from 0 to below the chunk size ({chunk_size}), got {chunk_overlap!r}"
        )
    from llama_index.core.node_parser import SentenceSplitter

    documents = load_documents(folder)
    # The metadata describe the chunk; they are not part of its text (nor of its token budget).
    for doc in documents:
        doc.excluded_embed_metadata_keys = list(doc.metadata)
        doc.excluded_llm_metadata_keys = list(doc.metadata)
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    passages: list[Passage] = []
    chunks: Counter[str] = Counter()
    has_text: set[str] = set()
    for doc in documents:
        file = doc.metadata["file"]
        chunks.setdefault(file, 0)
        if not doc.text.strip():
            continue
        has_text.add(file)
        for node in splitter.get_nodes_from_documents([doc]):
            text = node.get_content()
            if not text.strip():
                continue
            start, end = node.start_char_idx, node.end_char_idx
            if start is None or end is None or doc.text[start:end] != text:
                found = doc.text.find(text)  # the splitter's offsets are missing or off
                start, end = (found, found + len(text)) if found >= 0 else (None, None)
            k = chunks[file]
            chunks[file] += 1
            meta: dict[str, Any] = {"file": file, "file_type": doc.metadata["file_type"]}
            if "page" in doc.metadata:
                meta["page"] = doc.metadata["page"]
            if "html_title" in doc.metadata:
                meta["html_title"] = doc.metadata["html_title"]
            meta.update({"start_char": start, "end_char": end, "chunk": k})
            title = Path(file).name + (f", page {meta['page']}" if "page" in meta else "")
            passages.append(Passage(id=f"{file}:{k}", text=text, title=title, metadata=meta))
    empty = sorted(f for f in chunks if f not in has_text)
    if empty:
        log.warning("no text in %d file(s), skipped (a scanned PDF has no text layer): %s",
                    len(empty), ", ".join(empty))
    if not passages:
        raise InputError(
            f"no text could be read from the documents in {str(folder)!r} ({', '.join(empty)}); "
            "a scanned PDF has no text layer"
        )
    return passages


def build_docs_index(
    folder: str | Path,
    out: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    embedder_name: str | None = None,
) -> Any:
    """Read, chunk and embed the documents of ``folder``; write the index folder ``out``."""
    from .embeddings import DEFAULT_EMBEDDER
    from .index import PassageIndex

    passages = read_documents(folder, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    index = PassageIndex.build(passages, embedder_name or DEFAULT_EMBEDDER)
    index.save(out)
    return index


def passage_origin(passage: Any) -> dict[str, Any]:
    """``{"file", "page"}`` of a passage from a documents folder (None where not known)."""
    meta = getattr(passage, "metadata", None) or {}
    file, page = meta.get("file"), meta.get("page")
    return {
        "file": file if isinstance(file, str) else None,
        "page": page if isinstance(page, int) and not isinstance(page, bool) else None,
    }


__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "DocumentReadError",
    "SUPPORTED_SUFFIXES",
    "build_docs_index",
    "list_documents",
    "load_documents",
    "passage_origin",
    "read_documents",
]

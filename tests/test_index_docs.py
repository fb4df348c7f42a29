"""`attribot-rag index --docs FOLDER`: txt, md, html and pdf files through LlamaIndex's
SimpleDirectoryReader and SentenceSplitter, each chunk keeping its file and position, and
the service's citations naming the file."""

import pytest

pytest.importorskip("llama_index.core", reason="documents need the docs extra: pip install 'attribot-rag[docs]'")
pytest.importorskip("pypdf", reason="documents need the docs extra: pip install 'attribot-rag[docs]'")
pytest.importorskip("bs4", reason="documents need the docs extra: pip install 'attribot-rag[docs]'")
pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'attribot-rag[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from attribot_rag import Attributor  # noqa: E402
from attribot_rag.cli import main  # noqa: E402
from attribot_rag.documents import DocumentReadError, read_documents  # noqa: E402
from attribot_rag.errors import InputError  # noqa: E402
from attribot_rag.index import PassageIndex  # noqa: E402
from attribot_rag.service import create_app  # noqa: E402


def make_pdf(pages: list[list[str]]) -> bytes:
    """A small valid PDF: one page of Helvetica text lines per entry of ``pages``."""

    def escape(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects = {
        1: "<< /Type /Catalog /Pages 2 0 R >>",
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    kids = []
    for i, lines in enumerate(pages):
        page, content = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page} 0 R")
        stream = "\n".join(["BT", "/F1 11 Tf", "14 TL", "72 720 Td"] + [f"({escape(s)}) Tj T*" for s in lines] + ["ET"])
        objects[page] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>"
        )
        objects[content] = f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream"
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n{objects[number]}\nendobj\n".encode("latin-1")
    xref, size = len(out), max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offsets[n]:010d} 00000 n \n".encode() for n in range(1, size))
    out += f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


TRAVEL_PAGE_2 = [
    "Hotels and meals abroad.",
    "For international trips the hotel limit is 260 dollars per night.",
    "Meals abroad are covered up to 95 dollars a day.",
]

HTML = """<!doctype html><html><head><title>Parking at the office</title>
<style>p { color: red }</style><script>var tracking = "do not index";</script></head>
<body><nav>Intranet &gt; Facilities</nav><h1>Parking</h1>
<p>The Pittsburgh office has <b>40</b> parking spaces.</p>
<ul><li>Bicycles can be stored in the basement.</li><li>Electric cars charge on level 2.</li></ul>
</body></html>"""

MARKDOWN = """# Security

Laptops must use full-disk encryption.

Passwords are rotated every 180 days; a lost badge is reported to security@example.com at once.
"""

# Long enough for several chunks at a small chunk size.
LEAVE = "\n\n".join(
    f"Leave rule {i}: full-time employees receive {20 + i} paid vacation days in year {i} of service. "
    f"Unused days from year {i} expire on March 31 of the following year."
    for i in range(1, 9)
)


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    (folder / "leave.txt").write_text(LEAVE + "\n", encoding="utf-8")
    (folder / "security.md").write_text(MARKDOWN, encoding="utf-8")
    (folder / "parking.html").write_text(HTML, encoding="utf-8")
    policies = folder / "policies"
    policies.mkdir()
    (policies / "travel.pdf").write_bytes(
        make_pdf([["Travel policy.", "Book flights through the company portal."], TRAVEL_PAGE_2])
    )
    (folder / ".hidden.txt").write_text("not indexed", encoding="utf-8")
    (folder / "notes.docx").write_bytes(b"PK not a supported type")
    return folder


@pytest.fixture(scope="module")
def passages(docs_folder):
    return read_documents(docs_folder, chunk_size=40, chunk_overlap=0)


def test_only_the_skipped_types_are_reported(docs_folder, caplog):
    read_documents(docs_folder)
    messages = [r.getMessage() for r in caplog.records]
    assert any("skipped 1 file(s) of unsupported types" in m and ".docx" in m for m in messages)
    # the pdf and html readers here stand in for llama-index-readers-file: no note about it
    assert not any("llama-index-readers-file" in m for m in messages)


def test_every_file_type_is_read_and_chunks_keep_file_and_position(docs_folder, passages):
    files = {p.metadata["file"] for p in passages}
    assert files == {"leave.txt", "security.md", "parking.html", "policies/travel.pdf"}  # no hidden, no docx
    types = {p.metadata["file"]: p.metadata["file_type"] for p in passages}
    assert types == {"leave.txt": "txt", "security.md": "md", "parking.html": "html", "policies/travel.pdf": "pdf"}
    assert len({p.id for p in passages}) == len(passages)
    for p in passages:
        file, k = p.metadata["file"], p.metadata["chunk"]
        assert p.id == f"{file}:{k}"
        assert p.title.startswith(file.rsplit("/", 1)[-1])
    # txt and md: the chunk is the file's text at its offsets.
    leave = [p for p in passages if p.metadata["file"] == "leave.txt"]
    assert len(leave) > 2, "a small chunk size splits the text file into several chunks"
    assert [p.metadata["chunk"] for p in leave] == list(range(len(leave)))
    text = (docs_folder / "leave.txt").read_text(encoding="utf-8")
    for p in leave:
        assert text[p.metadata["start_char"]:p.metadata["end_char"]] == p.text
        assert p.text.rstrip().endswith("."), "chunks end at sentence boundaries"
    starts = [p.metadata["start_char"] for p in leave]
    assert starts == sorted(starts) and starts[0] == 0
    md = next(p for p in passages if p.metadata["file"] == "security.md")
    assert MARKDOWN[md.metadata["start_char"]:md.metadata["end_char"]] == md.text
    # pdf: one page per document, the page number in the metadata and the title.
    pdf = [p for p in passages if p.metadata["file"] == "policies/travel.pdf"]
    assert [p.metadata["page"] for p in pdf] == [1, 2]
    assert pdf[1].title == "travel.pdf, page 2"
    assert "hotel limit is 260 dollars per night" in pdf[1].text
    assert pdf[1].metadata["start_char"] == 0
    # html: visible text only, the block structure kept, the page title in the metadata.
    html = [p for p in passages if p.metadata["file"] == "parking.html"]
    html_text = "\n".join(p.text for p in html)
    assert "The Pittsburgh office has 40 parking spaces." in html_text
    assert "Bicycles can be stored in the basement." in html_text
    assert "tracking" not in html_text and "color" not in html_text and "Intranet" not in html_text
    assert html[0].metadata["html_title"] == "Parking at the office"


@pytest.mark.slow  # the index command loads the MiniLM embedder
def test_cli_writes_an_index_that_loads_with_the_metadata(docs_folder, tmp_path, capsys):
    out = tmp_path / "index"
    assert main(["index", "--docs", str(docs_folder), "--out", str(out), "--chunk-size", "60"]) == 0
    assert "of 4 files" in capsys.readouterr().out
    index = PassageIndex.load(out)
    pdf_page_2 = next(p for p in index.passages if p.metadata.get("page") == 2)
    assert pdf_page_2.metadata["file"] == "policies/travel.pdf"
    hits = index.search("What is the nightly hotel limit for international trips?", k=1)
    assert hits[0][0].metadata["file"] == "policies/travel.pdf"


@pytest.fixture(scope="module")
def docs_client(lm, docs_folder):
    index = PassageIndex.build(read_documents(docs_folder))
    with TestClient(create_app(Attributor(lm, max_new_tokens=24), index=index)) as c:
        yield c


def test_ask_cites_the_file_the_answer_came_from(docs_client):
    question = "What is the hotel limit per night for international trips?"
    r = docs_client.post("/v1/ask", json={"question": question, "k": 2, "method": "at2"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["retrieved"][0]["file"] == "policies/travel.pdf" and out["retrieved"][0]["page"] == 2
    cite = out["cite"]
    assert "260" in cite["answer"], cite["answer"]
    assert cite["citations"], f"no citation for {cite['answer']!r}"
    first = cite["citations"][0]
    assert first["file"] == "policies/travel.pdf" and first["page"] == 2
    assert first["title"] == "travel.pdf, page 2"
    assert first["quote"] in " ".join(TRAVEL_PAGE_2)
    cited = next(p for p in cite["passages"] if p["number"] == first["number"])
    assert cited["file"] == "policies/travel.pdf" and cited["metadata"]["page"] == 2
    assert {"start_char", "end_char", "chunk"} <= set(cited["metadata"])


def test_the_page_shows_the_file_of_sources_and_quotes(docs_client):
    script = docs_client.get("/static/page.js").text
    assert "function origin(item)" in script and "item.file" in script


# --------------------------------------------------------------------------- bad input


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_documents(tmp_path / "nope")


def test_a_file_instead_of_a_folder(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="is a file, not a folder.*--corpus"):
        read_documents(tmp_path / "corpus.jsonl")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="is empty"):
        read_documents(tmp_path)


def test_folder_without_supported_files(tmp_path):
    (tmp_path / "a.docx").write_bytes(b"PK")
    (tmp_path / "b.csv").write_text("x,y\n")
    with pytest.raises(InputError, match=r"no file of a supported type .*\.pdf.*2 other file\(s\): 1 \.csv, 1 \.docx"):
        read_documents(tmp_path)


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\nthis is not really a pdf\n", b"", make_pdf([["Truncated."]])[:120]],
    ids=["garbage", "empty", "truncated"],
)
def test_corrupt_pdf_names_the_file(tmp_path, data):
    (tmp_path / "fine.txt").write_text("A readable file.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.pdf").write_bytes(data)
    with pytest.raises(DocumentReadError, match=r"cannot read sub/broken\.pdf: not a readable PDF"):
        read_documents(tmp_path)


def test_text_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("Caf\u00e9 policy".encode("latin-1"))
    with pytest.raises(DocumentReadError, match=r"cannot read latin1\.txt: not UTF-8 text"):
        read_documents(tmp_path)


def test_a_pdf_without_text_alone_is_an_error(tmp_path):
    (tmp_path / "scan.pdf").write_bytes(make_pdf([[]]))
    with pytest.raises(InputError, match=r"no text could be read .*scan\.pdf"):
        read_documents(tmp_path)


def test_bad_chunk_settings(tmp_path):
    (tmp_path / "a.txt").write_text("Text.")
    with pytest.raises(InputError, match="chunk overlap"):
        read_documents(tmp_path, chunk_size=50, chunk_overlap=50)


def test_cli_reports_bad_input_as_an_error_line(tmp_path, capsys):
    assert main(["index", "--docs", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "attribot-rag: error: documents folder" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


def test_corpus_and_docs_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["index", "--docs", str(tmp_path), "--corpus", "x.jsonl", "--out", str(tmp_path / "out")])
    assert "not allowed with argument" in capsys.readouterr().err

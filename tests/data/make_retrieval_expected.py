#!/usr/bin/env python3
"""Write the NumPy oracle of the document-retrieval pipeline for tessera's tests.

It reads examples/data/retrieval_corpus.safetensors (made by
examples/data/prepare_retrieval.py), computes in float64 with NumPy what
examples/document_retrieval.cpp computes with tessera, and writes
tests/data/retrieval_corpus_expected.txt, one "key value..." line per item:

    <method>.recall_at_1, <method>.recall_at_10, <method>.mrr_at_10
        for method mean, max and first (document vectors by mean pooling,
        element-wise max and the first passage), ranked by cosine, ties to
        the lower document index;
    <method>.top10  the top-10 document indices of every query, row by row;
    rerank.source_found  how many queries have, among the passages of their
        own document, the source passage as the best one by cosine.

The test "document retrieval matches NumPy" runs tessera on the same file and
requires the same rankings. Only the Python standard library and NumPy are
needed, and no network access.

Usage: python tests/data/make_retrieval_expected.py
"""

import json
import pathlib
import struct

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "data" / "retrieval_corpus.safetensors"
OUTPUT = pathlib.Path(__file__).with_name("retrieval_corpus_expected.txt")
TOP = 10
DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    body = data[8 + header_size :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = np.dtype(DTYPES[entry["dtype"]]).newbyteorder("<")
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(entry["shape"])
    return tensors


def normalize(rows):
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def top_documents(queries, documents):
    """Top-10 document indices by cosine, ties broken by the lower index."""
    scores = normalize(queries) @ normalize(documents).T
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)
    return order[:, :TOP]


def metrics(ranked, relevant):
    hits = ranked == relevant[:, None]
    found = hits.any(axis=1)
    rank = np.where(found, hits.argmax(axis=1) + 1, 0)
    reciprocal = np.where(found, 1.0 / np.maximum(rank, 1), 0.0)
    return hits[:, 0].mean(), found.mean(), reciprocal.mean()


def main():
    tensors = read_safetensors(CORPUS)
    passages = tensors["passages.embedding"].astype(np.float64)
    offsets = tensors["documents.offsets"]
    queries = tensors["queries.embedding"].astype(np.float64)
    relevant = tensors["queries.document"]
    source = tensors["queries.passage"]

    segments = [passages[offsets[d] : offsets[d + 1]] for d in range(len(offsets) - 1)]
    methods = {
        "mean": np.stack([segment.mean(axis=0) for segment in segments]),
        "max": np.stack([segment.max(axis=0) for segment in segments]),
        "first": np.stack([segment[0] for segment in segments]),
    }
    lines = []
    for name, documents in methods.items():
        ranked = top_documents(queries, documents)
        recall_at_1, recall_at_10, mrr_at_10 = metrics(ranked, relevant)
        lines += [
            f"{name}.recall_at_1 {recall_at_1:.17g}",
            f"{name}.recall_at_10 {recall_at_10:.17g}",
            f"{name}.mrr_at_10 {mrr_at_10:.17g}",
            f"{name}.top10 " + " ".join(str(value) for value in ranked.reshape(-1)),
        ]

    passage_scores = normalize(queries) @ normalize(passages).T
    found = 0
    for q, document in enumerate(relevant):
        begin, end = offsets[document], offsets[document + 1]
        # argmax returns the first maximum: ties go to the lower passage row.
        found += int(begin + np.argmax(passage_scores[q, begin:end]) == source[q])
    lines.append(f"rerank.source_found {found}")

    OUTPUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}: rerank.source_found {found}")


if __name__ == "__main__":
    main()

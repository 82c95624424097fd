#!/usr/bin/env python3
"""Write PyTorch scaled_dot_product_attention reference cases for tessera's attention tests.

torch.nn.functional.scaled_dot_product_attention (SDPA) is the independent
oracle. Each case runs SDPA on fixed-seed float32 inputs and on their
float64 copies, and the script writes the inputs, both outputs, the
log-sum-exp of every row and the mask to
tests/data/attention_sdpa.safetensors, so the tests need no Python.

Tensors of case cN (N = 0, 1, ...), all F32, layout [batch, heads, tokens, dim]:
    cN.q      [B, Hq, Lq, D]    inputs drawn from N(0, 1), q and k scaled up
    cN.k      [B, Hkv, Lk, D]   in the large-logit case
    cN.v      [B, Hkv, Lk, Dv]
    cN.out    [B, Hq, Lq, Dv]   SDPA of the float64 copies, rounded to float32
    cN.out32  [B, Hq, Lq, Dv]   SDPA of the float32 inputs
    cN.lse    [B, Hq, Lq]       log(sum_j exp(s_ij)) in float64, where s_ij is
                                scale * q_i . k_j plus the additive mask, or
                                -inf where a boolean mask hides key j. It is
                                -inf for a fully masked row.
    cN.mask   only for the additive and bool kinds, as passed to SDPA:
              additive values (-inf hides a key), or 1.0 = attend and
              0.0 = masked for bool, since the C++ reader has no bool dtype.
              Its shape is [B or 1, Hq or 1, Lq, Lk].
With Hkv < Hq (grouped-query attention, enable_gqa=True), query head h
uses key/value head h // (Hq / Hkv), as SDPA does.

The file's __metadata__ contains "source" (versions and script) and one
JSON object per case under the key "cN". Each object has "mask" (none,
causal, sliding_window, block_local, spatio_temporal, additive or bool), the
shape, "enable_gqa" and "scale" (null means the default 1 / sqrt(D)). It
also has "fully_masked_rows" (every [b, h, i] whose every key is masked)
and "torch_fully_masked" (what SDPA returned for those rows, "zeros" or
"NaN", null when there are none).
tessera's contract for such a row is a zero output and an lse of -inf, so
out and out32 hold zeros there whatever SDPA returned.

Structural masks (causal, sliding_window, block_local, spatio_temporal) are
built here as explicit boolean masks and passed to SDPA as attn_mask. Their
metadata also has "alignment", "group", "before", "after" and
"global_tokens", with this meaning:
    Query i has position p = i + offset, where offset is 0 for top_left and
    Lk - Lq for bottom_right. Key j has position j.
    A query is global if 0 <= p < global_tokens, a key if j < global_tokens.
    A non-global position x is in group floor((x - global_tokens) / group).
    Key j is visible from query i if the query or the key is global, or if
    group(p) - before <= group(j) <= group(p) + after, where a null before
    or after is unbounded.
    Groups are floors, so a query with p < 0 (bottom_right with Lq > Lk)
    has a negative group: under causal it sees only the global keys, and a
    window with after > 0 reaches the first keys, as FlashAttention's
    windows do.
The named kinds fix these parameters:
    causal                    group 1, before null, after 0, global 0
    sliding_window(l, r)      group 1, before l, after r, global 0
    block_local(w, g)         group w, before 0, after 0, global g
    spatio_temporal(P, b, a, g)
                              group P (patches per frame), before b and
                              after a frames, global g. The sequence is g
                              global tokens, then the frames.
Structural metadata also repeats the named kind's own parameters: "left" and
"right", "block", or "patches", "frames", "frames_before" and "frames_after".
Every case also records "mask_shape" (when there is a mask), "max_abs_logit"
(the largest |s_ij| that a mask leaves finite), "out32_max_abs_error" and,
for some, a "note".
The script checks the causal masks against SDPA itself: top_left against
is_causal=True and bottom_right against
torch.nn.attention.bias.causal_lower_right.

What torch 2.15.0 (CPU build, AVX2) did in this script's runs:
    - A fully masked row gave zeros, not NaN, in float32 and float64, with
      a boolean mask, with an additive mask of -inf and with
      causal_lower_right, although causal_lower_right warns that Lq > Lk
      produces NaN. The script records this per case in
      "torch_fully_masked" and stops if SDPA returns a mix of the two.
    - is_causal=True aligns the diagonal top-left (key j <= query i) also
      when Lq != Lk, so with Lq > Lk the queries i >= Lk attend to every
      key. The comparison with the explicit top_left mask checks this.
    - SDPA accepts Dv != D (case c17). torch.profiler showed that it runs
      the math backend for Dv != D and the CPU flash-attention kernel
      otherwise. The script does not check which backend runs.
The script also stops with an AssertionError on a wrong shape, a NaN in a
row that attends to some key, a float64 output that differs from the
softmax of the materialised scores, or out32 differing from out by more
than 1e-4.

Written with Python 3.11.7, torch 2.15.0 (the PyPI default build,
2.15.0+cu132, run on the CPU) and numpy 2.4.6. Inputs come from
numpy.random.default_rng, seeded per case.

Usage: python tests/data/make_attention_fixtures.py [--output PATH]
Writes tests/data/attention_sdpa.safetensors next to this script by default.
"""

import argparse
import json
import math
import pathlib
import platform
import struct
import warnings

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_OUTPUT = pathlib.Path(__file__).with_name("attention_sdpa.safetensors")
SEED = 20260105
# Largest allowed absolute difference between SDPA in float32 and float64.
FLOAT32_TOLERANCE = 1e-4
MAX_FILE_BYTES = 1_500_000
MASK_KINDS = ("none", "causal", "sliding_window", "block_local", "spatio_temporal", "additive", "bool")
STRUCTURAL_KINDS = ("causal", "sliding_window", "block_local", "spatio_temporal")


# ---------------------------------------------------------------------------
# Masks.


def structural_mask(query_count, key_count, group, before, after, global_tokens, alignment):
    """Return the [Lq, Lk] boolean mask (True = visible) of the structural rule in the docstring."""
    if group < 1 or global_tokens < 0:
        raise ValueError(f"invalid group {group} or global_tokens {global_tokens}")
    if alignment not in ("top_left", "bottom_right"):
        raise ValueError(f"invalid alignment {alignment!r}")
    offset = 0 if alignment == "top_left" else key_count - query_count
    positions = np.arange(query_count)[:, None] + offset
    keys = np.arange(key_count)[None, :]

    query_global = (positions >= 0) & (positions < global_tokens)
    key_global = keys < global_tokens
    # A query with p < 0 (bottom_right with Lq > Lk) has a negative group, so
    # only keys within its window are visible, as in FlashAttention's windows.
    query_group = (positions - global_tokens) // group
    key_group = (keys - global_tokens) // group

    in_window = np.ones((query_count, key_count), dtype=bool)
    if before is not None:
        in_window &= key_group >= query_group - before
    if after is not None:
        in_window &= key_group <= query_group + after

    return query_global | key_global | in_window


def named_parameters(kind, **arguments):
    """Map a named structural kind to group, before, after and global_tokens."""
    if kind == "causal":
        return {"group": 1, "before": None, "after": 0, "global_tokens": 0}
    if kind == "sliding_window":
        return {"group": 1, "before": arguments["left"], "after": arguments["right"], "global_tokens": 0}
    if kind == "block_local":
        return {"group": arguments["block"], "before": 0, "after": 0, "global_tokens": arguments["global_tokens"]}
    if kind == "spatio_temporal":
        return {"group": arguments["patches"], "before": arguments["frames_before"],
                "after": arguments["frames_after"], "global_tokens": arguments["global_tokens"]}
    raise ValueError(f"{kind!r} is not a structural mask kind")


# ---------------------------------------------------------------------------
# Reference computation.


def expand_kv_heads(tensor, query_heads):
    """Repeat each key/value head query_heads / Hkv times, as SDPA's enable_gqa does."""
    return tensor.repeat_interleave(query_heads // tensor.shape[1], dim=1)


def masked_scores(q, k, scale, mask):
    """Return scale * q k^T in float64 with the mask applied.

    A float mask is added, and a bool mask sets -inf where it is False.
    """
    scores = (q.double() @ expand_kv_heads(k.double(), q.shape[1]).transpose(-1, -2)) * scale
    if mask is None:
        return scores
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask.double()


def reference_attention(scores, v, query_heads):
    """Softmax the scores row by row and weight the values. Fully masked rows give zeros."""
    lse = torch.logsumexp(scores, dim=-1)
    finite_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    weights = torch.exp(scores - finite_lse[..., None])
    return weights @ expand_kv_heads(v.double(), query_heads), lse


def sdpa(q, k, v, mask, scale, enable_gqa, is_causal=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=enable_gqa,
                                          is_causal=is_causal)


# ---------------------------------------------------------------------------
# Cases.


def normal(rng, shape, scale=1.0):
    return torch.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32))


def build_case(index, spec):
    """Compute the tensors and metadata of one case from its spec."""
    rng = np.random.default_rng([SEED, index])
    batch, query_heads, kv_heads = spec["batch"], spec["query_heads"], spec.get("kv_heads", spec["query_heads"])
    query_count, key_count, dim = spec["query_count"], spec["key_count"], spec["dim"]
    value_dim = spec.get("value_dim", dim)
    kind = spec["mask"]
    assert kind in MASK_KINDS, kind
    scale = spec.get("scale")
    input_scale = spec.get("input_scale", 1.0)

    q = normal(rng, (batch, query_heads, query_count, dim), input_scale)
    k = normal(rng, (batch, kv_heads, key_count, dim), input_scale)
    v = normal(rng, (batch, kv_heads, key_count, value_dim))
    if spec.get("paired_keys"):
        # Keys 2m and 2m + 1 are equal, so every row has exact ties at its largest logit.
        k[:, :, 1::2] = k[:, :, 0::2]
    enable_gqa = kv_heads != query_heads

    metadata = {"mask": kind, "batch": batch, "query_heads": query_heads, "kv_heads": kv_heads,
                "query_count": query_count, "key_count": key_count, "dim": dim, "value_dim": value_dim,
                "enable_gqa": enable_gqa, "scale": scale}
    stored_mask = None
    if kind in STRUCTURAL_KINDS:
        parameters = named_parameters(kind, **spec.get("parameters", {}))
        alignment = spec["alignment"]
        if kind == "spatio_temporal":
            frame_tokens = spec["parameters"]["frames"] * parameters["group"]
            assert key_count == parameters["global_tokens"] + frame_tokens, f"c{index}: token count"
        mask = torch.from_numpy(structural_mask(query_count, key_count, alignment=alignment, **parameters))
        metadata.update(spec.get("parameters", {}))
        metadata.update(parameters)
        metadata["alignment"] = alignment
    elif kind == "additive":
        mask = spec["make_mask"](rng)
        stored_mask = mask
    elif kind == "bool":
        mask = spec["make_mask"](rng)
        stored_mask = mask.float()
    else:
        mask = None
    if mask is not None:
        metadata["mask_shape"] = list(mask.shape)

    effective_scale = scale if scale is not None else 1.0 / math.sqrt(dim)
    scores = masked_scores(q, k, effective_scale, mask)
    reference, lse = reference_attention(scores, v, query_heads)

    out64 = sdpa(q.double(), k.double(), v.double(), mask if mask is None or mask.dtype == torch.bool
                 else mask.double(), scale, enable_gqa)
    out32 = sdpa(q, k, v, mask, scale, enable_gqa)
    check_against_sdpa_causal(spec, q, k, v, out64, scale, enable_gqa)

    fully_masked = torch.isneginf(lse)
    fully_masked_rows = [list(map(int, row)) for row in fully_masked.nonzero().tolist()]
    torch_fully_masked = None
    if fully_masked_rows:
        rows64 = out64[fully_masked]
        rows32 = out32[fully_masked]
        if bool((rows64 == 0).all()) and bool((rows32 == 0).all()):
            torch_fully_masked = "zeros"
        elif bool(rows64.isnan().all()) and bool(rows32.isnan().all()):
            torch_fully_masked = "NaN"
        else:
            raise AssertionError(f"c{index}: SDPA returned neither all zeros nor all NaN for fully masked rows")
        out64 = out64.masked_fill(fully_masked[..., None], 0.0)
        out32 = out32.masked_fill(fully_masked[..., None], 0.0)
    metadata["fully_masked_rows"] = fully_masked_rows
    metadata["torch_fully_masked"] = torch_fully_masked
    if "note" in spec:
        metadata["note"] = spec["note"]

    name = f"c{index}"
    output_shape = (batch, query_heads, query_count, value_dim)
    assert tuple(out64.shape) == output_shape, f"{name}: out has shape {tuple(out64.shape)}"
    assert tuple(out32.shape) == output_shape, f"{name}: out32 has shape {tuple(out32.shape)}"
    assert tuple(lse.shape) == output_shape[:3], f"{name}: lse has shape {tuple(lse.shape)}"
    assert not out64.isnan().any(), f"{name}: float64 SDPA returned NaN in a row that attends to some key"
    assert not out32.isnan().any(), f"{name}: float32 SDPA returned NaN in a row that attends to some key"
    torch.testing.assert_close(out64, reference, rtol=1e-10, atol=1e-12,
                               msg=lambda text: f"{name}: float64 SDPA differs from softmax of the scores: {text}")
    difference = (out32.double() - out64).abs().max().item()
    assert difference <= FLOAT32_TOLERANCE, f"{name}: float32 SDPA differs from float64 by {difference:.2e}"
    assert torch.equal(fully_masked, ~torch.isfinite(lse)), f"{name}: lse is +inf or NaN in some row"

    tensors = {f"{name}.q": q, f"{name}.k": k, f"{name}.v": v, f"{name}.out": out64.float(),
               f"{name}.out32": out32, f"{name}.lse": lse.float()}
    if stored_mask is not None:
        tensors[f"{name}.mask"] = stored_mask.float()
    metadata["max_abs_logit"] = round(float(scores[torch.isfinite(scores)].abs().max()), 3)
    metadata["out32_max_abs_error"] = float(f"{difference:.3e}")
    return tensors, metadata


def check_against_sdpa_causal(spec, q, k, v, out64, scale, enable_gqa):
    """Compare a causal case's explicit mask with SDPA's own causal masks."""
    if spec["mask"] != "causal":
        return
    query_count, key_count = q.shape[2], k.shape[2]
    q64, k64, v64 = q.double(), k.double(), v.double()
    if spec["alignment"] == "top_left":
        expected = sdpa(q64, k64, v64, None, scale, enable_gqa, is_causal=True)
        source = "is_causal=True"
    else:
        try:
            from torch.nn.attention.bias import causal_lower_right
        except ImportError:
            print(f"note: torch {torch.__version__} has no causal_lower_right, so the bottom_right mask is unchecked")
            return
        # The CausalBias path of SDPA takes no enable_gqa, so the key/value heads are expanded here.
        if enable_gqa:
            k64, v64 = expand_kv_heads(k64, q.shape[1]), expand_kv_heads(v64, q.shape[1])
        with warnings.catch_warnings():
            # It warns that Lq > Lk produces NaN, which torch 2.15 did not do on the CPU.
            warnings.simplefilter("ignore", UserWarning)
            bias = causal_lower_right(query_count, key_count)
        expected = sdpa(q64, k64, v64, bias, scale, False)
        source = "causal_lower_right"
    torch.testing.assert_close(out64, expected, rtol=1e-12, atol=1e-13,
                               msg=lambda text: f"explicit causal mask differs from SDPA {source}: {text}")


def additive_mask(rng):
    """[2, 2, 24, 40] random additive mask with about 20 % -inf and one fully masked row."""
    values = rng.standard_normal((2, 2, 24, 40)) * 2.0
    values[rng.random(values.shape) < 0.2] = -np.inf
    values[1, 1, 7, :] = -np.inf
    return torch.from_numpy(values.astype(np.float32))


def broadcast_bool_mask(rng):
    """[1, 1, 29, 37] random boolean mask (about 70 % visible) with row 11 fully masked."""
    visible = rng.random((1, 1, 29, 37)) < 0.7
    visible[0, 0, 11, :] = False
    return torch.from_numpy(visible)


def key_padding_mask(rng):
    """[2, 1, 1, 41] key padding: batch 0 has 41 valid keys, batch 1 has 23."""
    valid = np.arange(41)[None, None, None, :] < np.array([41, 23])[:, None, None, None]
    return torch.from_numpy(valid)


# q . k / sqrt(D) of N(0, s^2) inputs has standard deviation s^2, and the
# largest |logit| of the case's 768 is about 3.5 standard deviations, so
# s = sqrt(1e4 / 3.5) makes it about 1e4 (10220 with this seed).
LARGE_LOGIT_INPUT_SCALE = math.sqrt(1e4 / 3.5)


CASES = [
    dict(mask="none", batch=2, query_heads=2, query_count=19, key_count=33, dim=32),
    dict(mask="causal", alignment="top_left", batch=1, query_heads=1, query_count=20, key_count=45, dim=64),
    dict(mask="causal", alignment="top_left", batch=1, query_heads=1, query_count=40, key_count=40, dim=128),
    dict(mask="causal", alignment="top_left", batch=2, query_heads=1, query_count=50, key_count=30, dim=32),
    dict(mask="causal", alignment="bottom_right", batch=1, query_heads=1, query_count=17, key_count=61, dim=80),
    dict(mask="causal", alignment="bottom_right", batch=1, query_heads=2, query_count=45, key_count=29, dim=48,
         note="queries 0-15 come before the first key, so their rows are fully masked"),
    dict(mask="sliding_window", alignment="top_left", batch=1, query_heads=1, query_count=70, key_count=70, dim=16,
         parameters=dict(left=5, right=0)),
    dict(mask="sliding_window", alignment="bottom_right", batch=1, query_heads=1, query_count=24, key_count=56,
         dim=64, parameters=dict(left=3, right=2)),
    dict(mask="block_local", alignment="top_left", batch=1, query_heads=1, query_count=59, key_count=59, dim=96,
         parameters=dict(block=8, global_tokens=2)),
    dict(mask="spatio_temporal", alignment="top_left", batch=1, query_heads=1, query_count=37, key_count=37,
         dim=112, parameters=dict(patches=9, frames=4, frames_before=1, frames_after=1, global_tokens=1)),
    dict(mask="additive", batch=2, query_heads=2, query_count=24, key_count=40, dim=32, make_mask=additive_mask),
    dict(mask="bool", batch=2, query_heads=2, query_count=29, key_count=37, dim=32, make_mask=broadcast_bool_mask,
         note="mask [1, 1, Lq, Lk] broadcast over batch and heads"),
    dict(mask="bool", batch=2, query_heads=2, query_count=13, key_count=41, dim=32, make_mask=key_padding_mask,
         note="key padding mask [B, 1, 1, Lk]: batch 1 attends to its first 23 keys"),
    dict(mask="causal", alignment="top_left", batch=1, query_heads=6, kv_heads=2, query_count=20, key_count=20,
         dim=32, note="grouped-query attention, Hq 6, Hkv 2"),
    dict(mask="none", batch=1, query_heads=2, kv_heads=1, query_count=9, key_count=33, dim=256,
         note="multi-query attention, Hkv 1"),
    dict(mask="none", batch=1, query_heads=1, query_count=21, key_count=26, dim=96, scale=0.3),
    dict(mask="none", batch=1, query_heads=1, query_count=16, key_count=48, dim=64,
         input_scale=LARGE_LOGIT_INPUT_SCALE, paired_keys=True,
         note="q and k scaled so that scaled logits reach about 1e4; keys 2m and 2m + 1 are equal, so each "
              "row splits its weight between two tied keys with different values"),
    dict(mask="none", batch=1, query_heads=1, query_count=15, key_count=27, dim=64, value_dim=32,
         note="Dv 32 differs from D 64"),
    dict(mask="sliding_window", alignment="bottom_right", batch=1, query_heads=1, query_count=30, key_count=20,
         dim=48, parameters=dict(left=3, right=2),
         note="queries 0-9 have positions -10 to -1: queries 0-7 see no key, and the right window of "
              "queries 8 and 9 reaches key 0 or keys 0 and 1"),
    dict(mask="causal", alignment="bottom_right", batch=1, query_heads=8, kv_heads=2, query_count=1, key_count=70,
         dim=64, note="one decode query, which sees every key"),
]


# ---------------------------------------------------------------------------
# Output.


def write_safetensors(path, tensors, metadata):
    """Write F32 tensors in name order with a string-valued __metadata__."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name].numpy(), dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad with spaces so that the data section starts on an 8-byte boundary.
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for blob in blobs:
            handle.write(blob)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="path of the safetensors file to write (default: attention_sdpa.safetensors "
                             "next to this script)")
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    torch.set_num_threads(1)
    tensors = {}
    metadata = {
        "source": json.dumps({
            "script": "tests/data/make_attention_fixtures.py",
            "oracle": "torch.nn.functional.scaled_dot_product_attention on the CPU",
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "seed": SEED,
        }),
    }
    for index, spec in enumerate(CASES):
        case_tensors, case_metadata = build_case(index, spec)
        tensors.update(case_tensors)
        metadata[f"c{index}"] = json.dumps(case_metadata)
        shapes = " ".join(f"{key.split('.', 1)[1]}{list(value.shape)}" for key, value in case_tensors.items())
        print(f"c{index}: {case_metadata['mask']:<15} {shapes}  fully masked rows "
              f"{len(case_metadata['fully_masked_rows'])}  out32 error {case_metadata['out32_max_abs_error']:.1e}")

    write_safetensors(arguments.output, tensors, metadata)
    size = arguments.output.stat().st_size
    assert size <= MAX_FILE_BYTES, f"{arguments.output} is {size} bytes, more than {MAX_FILE_BYTES}"
    print(f"wrote {arguments.output} ({size} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
    main()

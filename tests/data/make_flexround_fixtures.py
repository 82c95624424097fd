"""Write PyTorch reference outputs of FlexRound for tessera's tests.

PyTorch is an independent oracle: its autograd differentiates the
straight-through FlexRound forward written the way the method's authors
write it, and torch.round(W / S) defines the codes that tessera must match
bit for bit given the same S. The fixtures are small and committed, so the
tests need no Python.

Forward (float32), for a weight of shape [rows, cin * taps]:
    S     = exp(delta1 + delta2 + delta3 + delta4)   (delta4 repeated over taps)
    u     = W / S
    w_hat = exp(delta1) * clamp_inclusive(RoundSTE(u), qmin, qmax)
and the gradients come from (G * w_hat).sum().backward().

Two details keep the oracle on tessera's definition of the mask,
m = 1[qmin <= round(u) <= qmax], inclusive and on round(u) itself:
- RoundSTE returns round(u) exactly and passes the gradient unchanged. The
  common one-liner u + (round(u) - u).detach() is not exactly round(u) in
  float and can land just outside [qmin, qmax].
- torch.clamp passes no gradient at exactly qmin or qmax (seen with torch
  2.15), so clamp_inclusive selects the rounded value with its gradient
  inside the closed range and a detached bound outside it.

Usage: python tests/data/make_flexround_fixtures.py  (needs torch and numpy)
Writes tests/data/flexround_torch.safetensors next to this script.
"""

import json
import pathlib
import struct

import numpy as np
import torch

OUTPUT = pathlib.Path(__file__).with_name("flexround_torch.safetensors")


class RoundSTE(torch.autograd.Function):
    """round() in the forward, the identity in the backward."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def clamp_inclusive(x, low, high):
    """clamp() whose gradient is 1 on the closed range [low, high]."""
    inside = (x >= low) & (x <= high)
    return torch.where(inside, x, torch.clamp(x.detach(), low, high))


def flexround_case(name, rows, cin, taps, bits, zero_point, per_row, seed):
    """Return the tensors of one case, keyed by '<name>.<tensor>'."""
    generator = torch.Generator().manual_seed(seed)
    cols = cin * taps
    w = torch.randn(rows, cols, generator=generator) * 0.05
    s1 = w.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)
    if not per_row:
        s1 = s1.max().reshape(1, 1)
    delta1 = torch.log(s1).clone().requires_grad_(True)
    delta2 = (0.05 * torch.randn(rows, cols, generator=generator)).requires_grad_(True)
    delta3 = (0.05 * torch.randn(rows, 1, generator=generator)).requires_grad_(True)
    delta4 = (0.05 * torch.randn(1, cin, generator=generator)).requires_grad_(True)
    grad_w_hat = torch.randn(rows, cols, generator=generator)
    if zero_point is None:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        zp = 0
    else:
        qmin, qmax = -zero_point, 2**bits - 1 - zero_point
        zp = zero_point

    delta4_columns = delta4.repeat_interleave(taps, dim=1)
    scale = torch.exp(delta1 + delta2 + delta3 + delta4_columns)
    u = w / scale
    rounded = RoundSTE.apply(u)
    w_hat = torch.exp(delta1) * clamp_inclusive(rounded, qmin, qmax)
    (grad_w_hat * w_hat).sum().backward()

    codes = torch.clamp(torch.round(w / scale.detach()), qmin, qmax) + zp
    meta = np.array([rows, cols, taps, bits, zp, 0 if zero_point is None else 1, 1 if per_row else 0],
                    dtype=np.float32)
    tensors = {
        "meta": meta,
        "w": w,
        "delta1": delta1.detach().reshape(-1),
        "delta2": delta2.detach(),
        "delta3": delta3.detach().reshape(-1),
        "delta4": delta4.detach().reshape(-1),
        "scale": scale.detach(),
        "grad_w_hat": grad_w_hat,
        "w_hat": w_hat.detach(),
        "codes": codes.detach(),
        "grad_delta1": delta1.grad.reshape(-1),
        "grad_delta2": delta2.grad,
        "grad_delta3": delta3.grad.reshape(-1),
        "grad_delta4": delta4.grad.reshape(-1),
    }
    return {f"{name}.{key}": np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for key, value in tensors.items()}


def tie_case():
    """The division-versus-reciprocal case: 0.273939937 / 0.00214854861."""
    w = np.array([[0.273939937, -0.273939937, 0.0, 1e-30]], dtype=np.float32)
    scale = np.full_like(w, 0.00214854861)
    codes = torch.clamp(torch.round(torch.from_numpy(w) / torch.from_numpy(scale)), -128, 127)
    return {"tie.w": w, "tie.scale": scale, "tie.codes": codes.numpy().astype(np.float32)}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        data = tensors[name].astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for blob in blobs:
            out.write(blob)


def main():
    torch.set_num_threads(1)
    tensors = {}
    tensors.update(flexround_case("linear4", rows=6, cin=37, taps=1, bits=4, zero_point=None, per_row=True, seed=1))
    tensors.update(flexround_case("linear8", rows=5, cin=19, taps=1, bits=8, zero_point=None, per_row=False, seed=2))
    tensors.update(flexround_case("conv3", rows=4, cin=5, taps=9, bits=3, zero_point=3, per_row=True, seed=3))
    tensors.update(tie_case())
    metadata = {
        "script": "tests/data/make_flexround_fixtures.py",
        "torch": torch.__version__,
        "meta": "rows, cols, taps, bits, zero_point, asymmetric, per_row",
    }
    write_safetensors(OUTPUT, tensors, metadata)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()

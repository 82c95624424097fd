#!/usr/bin/env python3
"""Generate coffee.png, the sample photograph of the low-light example.

The source is skimage/data/coffee.png from the PyPI package scikit-image
0.26.0, a 600 x 400 RGB photograph of a coffee cup by Rachel Michetti. The
docstring of skimage.data.coffee() in that package states: "No copyright
restrictions.  CC0 by the photographer (Rachel Michetti)."

The script scales the photograph to 512 x 341 with Pillow's bilinear filter
(a triangle-weighted average of the source pixels when it shrinks), so that
the file stays under 300 KB, and writes an 8-bit RGB PNG. The source and licence are
recorded in the PNG's tEXt chunks.

Requirements: Python 3, scikit-image 0.26.0 and the Pillow it installs
(13.0.0 was used). No network access is needed.

Usage:
    python examples/data/prepare_photo.py [--output PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import skimage
from PIL import Image, PngImagePlugin

SCIKIT_IMAGE_VERSION = "0.26.0"
SOURCE_NAME = "coffee.png"

# SHA-256 of skimage/data/coffee.png in scikit-image 0.26.0, from the wheel's
# RECORD file. Other content would give another output, so it is rejected.
SOURCE_SHA256 = "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"

OUTPUT_SIZE = (512, 341)  # width, height: 600 x 400 scaled by 512 / 600, rounded
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "coffee.png"

TEXT_CHUNKS = {
    "Title": "Coffee cup",
    "Author": "Rachel Michetti",
    "Copyright": "CC0 by the photographer (Rachel Michetti), no copyright restrictions",
    "Source": f"scikit-image {SCIKIT_IMAGE_VERSION}, skimage/data/{SOURCE_NAME}, "
    f"scaled to {OUTPUT_SIZE[0]}x{OUTPUT_SIZE[1]} by examples/data/prepare_photo.py",
}


def source_path() -> Path:
    """Return the path of the photograph inside the installed scikit-image."""
    if skimage.__version__ != SCIKIT_IMAGE_VERSION:
        sys.exit(
            f"prepare_photo: scikit-image {SCIKIT_IMAGE_VERSION} is required, found "
            f"{skimage.__version__}; run pip install scikit-image=={SCIKIT_IMAGE_VERSION}"
        )
    path = Path(skimage.__file__).resolve().parent / "data" / SOURCE_NAME
    if not path.is_file():
        sys.exit(f"prepare_photo: {path} not found in the installed scikit-image")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"prepare_photo: {path} has SHA-256 {digest}, expected {SOURCE_SHA256}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG file to write")
    args = parser.parse_args()

    with Image.open(source_path()) as source:
        if source.mode != "RGB" or source.size != (600, 400):
            sys.exit(f"prepare_photo: expected a 600x400 RGB image, got {source.size} {source.mode}")
        scaled = source.resize(OUTPUT_SIZE, Image.Resampling.BILINEAR)

    info = PngImagePlugin.PngInfo()
    for key, text in TEXT_CHUNKS.items():
        info.add_text(key, text)
    scaled.save(args.output, "PNG", optimize=True, pnginfo=info)

    size = args.output.stat().st_size
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"wrote {args.output}: {OUTPUT_SIZE[0]}x{OUTPUT_SIZE[1]} RGB, {size} bytes, SHA-256 {digest}")


if __name__ == "__main__":
    main()

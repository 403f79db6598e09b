"""Label rendering throughput: 500 labels as PDF and as ZPL, next to baselines from this run.

Run: .venv/bin/python bench/bench_labels.py [count]

Baselines: (a) encoding the same symbols alone (zxing-cpp, python-barcode, qrcode), the floor
for any output; (b) a PDF with one text-only page per label, what reportlab costs without
symbols. Symbol caches are cleared before each run so every label is encoded from scratch.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable

from reportlab.lib.pagesizes import LETTER
from reportlab.pdfgen.canvas import Canvas

from labels import samples
from labels import symbols
from labels.data import ApheresisBagLabel
from labels.data import CryoshipperLabel
from labels.data import FinalProductLabel
from labels.data import LabelData
from labels.data import LabelSize
from labels.data import ProcessingLabel
from labels.layouts import TextField
from labels.layouts import layout_for
from labels.render import render
from labels.render import render_sheet
from labels.render import render_zpl_batch

SIZE: LabelSize = "4x2"


def clear_caches() -> None:
    for encoder in (
        symbols.code128,
        symbols.gs1_128,
        symbols.datamatrix,
        symbols.gs1_datamatrix,
        symbols.qr,
    ):
        encoder.cache_clear()


def encode_symbols(label: LabelData) -> list[symbols.Symbol]:
    """The symbols a 4x2 label carries, encoded and nothing else."""
    if isinstance(label, ApheresisBagLabel | FinalProductLabel):
        return [
            symbols.code128(label.din_barcode),
            symbols.code128(label.coi_barcode),
            symbols.datamatrix(label.datamatrix_data),
        ]
    if isinstance(label, ProcessingLabel):
        return [symbols.code128(label.coi_barcode), symbols.datamatrix(label.datamatrix_data)]
    if isinstance(label, CryoshipperLabel):
        return [symbols.gs1_128(label.gs1_data), symbols.gs1_datamatrix(label.gs1_data)]
    return [symbols.code128(label.job_code)]


def label_texts(batch: list[LabelData]) -> list[list[str]]:
    return [
        [f.text for f in layout_for(label, SIZE, 203).fields if isinstance(f, TextField)]
        for label in batch
    ]


def text_only_pdf(texts: list[list[str]]) -> bytes:
    """One page per label with the same text lines, no symbols (layout done beforehand)."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=LETTER, invariant=True, initialFontName="Courier")
    for lines in texts:
        for i, line in enumerate(lines):
            canvas.drawString(36, 750 - 12 * i, line)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def timed(name: str, count: int, run: Callable[[], object]) -> float:
    clear_caches()
    start = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - start
    size = f"{len(result) / 1024:.0f} KiB" if isinstance(result, bytes) else ""
    print(f"{name:<44} {elapsed:7.3f} s {count / elapsed:9.1f} labels/s  {size}")
    return count / elapsed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    batch = samples.batch(count)
    texts = label_texts(batch)
    print(f"{count} distinct labels ({SIZE}, 203 dpi), every kind in turn\n")
    encode = timed(
        "baseline: symbol encoding alone", count, lambda: [encode_symbols(x) for x in batch]
    )
    plain = timed(
        "baseline: text-only PDF, one page per label", count, lambda: text_only_pdf(texts)
    )
    sheet = timed(
        "PDF: one letter sheet batch (10 per page)", count, lambda: render_sheet(batch, "letter")
    )
    per_label = timed(
        "PDF: one document per label",
        count,
        lambda: [render(x, "pdf", size=SIZE) for x in batch],
    )
    zpl = timed(
        "ZPL: one job of ^XA..^XZ formats", count, lambda: render_zpl_batch(batch, size=SIZE)
    )
    print()
    print(f"PDF sheet   / text-only PDF  : {sheet / plain:5.2f}x")
    print(f"PDF sheet   / symbols alone  : {sheet / encode:5.2f}x")
    print(f"PDF each    / text-only PDF  : {per_label / plain:5.2f}x")
    print(f"ZPL         / symbols alone  : {zpl / encode:5.2f}x")


if __name__ == "__main__":
    main()

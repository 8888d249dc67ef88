"""The exported file's size next to netinfo's predicted R/B/BQ sizes (analysis.storage_bytes'
conventions, with exactly the pattern layers the model holds as pattern layers).

What the file stores differs from the conventions in known ways, all listed here:
- a pattern weight takes 2 bits (INT2, the smallest type DequantizeLinear takes), not 1:
  B + (n/4 - n/8) bytes for n pattern weights;
- --bq quantizes the weights of Convolution and InnerProduct per output channel (a minimum
  and a step per channel; BQ: per blob) and keeps biases, BatchNorm and Scale blobs float32
  (BQ: 8-bit);
- BatchNorm's three blobs are stored as the mean and the deviation the graph uses (2 x 4
  bytes per channel, as blobs 0 and 1; not the 4-byte factor);
- the graph itself (node and value names, shapes, attributes) and ONNX's framing.
"""
import math
from dataclasses import dataclass

from sepnets.deploy import storage
from sepnets.nets import analysis


@dataclass
class SizeReport:
    path: str
    file_bytes: int
    stored: dict          # storage kind -> bytes of tensor data
    predicted: dict       # netinfo: {"R", "B", "BQ"} bytes
    pattern_layers: list
    pattern_weights: list  # weights of each pattern layer
    bq: bool

    @property
    def data_bytes(self):
        return sum(self.stored.values())

    def lines(self):
        mb = analysis.MB
        kinds = ", ".join(f"{kind} {self.stored[kind]:,}" for kind in storage.KINDS if self.stored[kind])
        p = self.predicted
        signs = sum(math.ceil(n / 4) for n in self.pattern_weights)
        bits = sum(math.ceil(n / 8) for n in self.pattern_weights)
        out = [f"wrote {self.path}: {self.file_bytes:,} bytes ({self.file_bytes / mb:.3f} MB); "
               f"tensor data {self.data_bytes:,} bytes ({kinds}), graph and framing "
               f"{self.file_bytes - self.data_bytes:,} bytes",
               f"netinfo's sizes for this model: R {p['R']:,} bytes ({p['R'] / mb:.3f} MB), "
               f"B {p['B']:,} ({p['B'] / mb:.3f} MB), BQ {p['BQ']:,} ({p['BQ'] / mb:.3f} MB)"
               f" -> this file is {'BQ' if self.bq else 'B' if self.pattern_layers else 'R'}"]
        if self.pattern_layers:
            out.append(f"pattern layers (every filter +-a_f): {', '.join(self.pattern_layers)}; "
                       f"{sum(self.pattern_weights):,} signs in INT2 = {signs:,} bytes (B counts 1 bit: "
                       f"{bits:,})")
        else:
            out.append("pattern layers: none (no Convolution has only +-a_f in every filter)")
        return out


def report(export, path, file_bytes):
    """SizeReport of a convert.Export written to `path` (file_bytes long)."""
    names = set(export.patterns)
    predicted = export.info.sizes(False, lambda layer: layer.name in names)
    order = [layer.name for layer in export.info.layers if layer.name in names]
    return SizeReport(str(path), file_bytes, export.stored, predicted, order,
                      export.pattern_weights(), export.bq)

"""kvsim's report generator and notebook reader (docs/report.md).

    from kvsim_report import load, load_trace
    run = load("out/demo-run")          # a RunResults: .summary, .layers, .kept (pandas)
    tr = load_trace("out/demo-stories260K.h5")

`python3 -m kvsim_report DIR... --out report.html` (or `kvsim report`) writes the HTML report.
"""
from .reader import (ResultsError, RunResults, ValidateResults, DiffResults, TransferResults, Table, Trace,
                     load, load_trace, RESULTS_FORMAT_VERSIONS)

__all__ = ["ResultsError", "RunResults", "ValidateResults", "DiffResults", "TransferResults", "Table", "Trace",
           "load", "load_trace", "RESULTS_FORMAT_VERSIONS"]

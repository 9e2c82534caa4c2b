"""Mogrifier LSTM cell for lstm-pipeline (Melis, Kočiský and Blunsom, 2019).

Kept light: importing this package (as Hydra does to read ``lstm_pipeline_mogrifier.conf``)
imports no torch; the cell lives in :mod:`lstm_pipeline_mogrifier.cell`.
"""

#: the lstm-pipeline plugin API this package is written for (checked when the cell is loaded)
LSTM_PIPELINE_API = "1"
__version__ = "0.1.0"

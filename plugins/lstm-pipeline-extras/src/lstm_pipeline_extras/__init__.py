"""Extras for lstm-pipeline: Mirostat v2 decoding, an e-book/Markdown data source and a callback
that logs generated samples during training. Importing this package imports nothing heavy."""

#: the lstm-pipeline plugin API this package is written for
LSTM_PIPELINE_API = "1"
__version__ = "0.1.0"

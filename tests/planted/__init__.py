"""Planted faults: plugin components, each with one fault the contract suites of
``lstm_pipeline.testing`` must catch (see tests/plugins/test_contract_faults.py). They mirror what a
plugin author really wrote; they are never registered."""

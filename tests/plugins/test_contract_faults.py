"""The contract suites catch the planted faults of tests/planted/ (issue 14, point 3): each faulty
component fails exactly the checks aimed at its fault and passes every other one (so the suites
before these checks let it through), while the correct cell passes them all."""
import pytest

from lstm_pipeline.testing import CellContract, DecoderContract
from planted.cells import Elman, NeverDropout, StepFailsUnderInference
from planted.decoders import TopAWrongScores


def failing_checks(suite) -> set[str]:
    """Run every test method of a suite instance; the names of those that fail."""
    failed = set()
    for name in sorted(n for n in dir(suite) if n.startswith("test_")):
        try:
            getattr(suite, name)()
        except pytest.skip.Exception:
            pass
        except Exception:  # an assertion or the component's own error: the check fails
            failed.add(name)
    return failed


def cell_suite(cls):
    class Suite(CellContract):
        def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
            return cls(input_size, hidden_size, num_layers, dropout)
    return Suite()


def test_the_correct_cell_passes_the_cell_suite():
    assert failing_checks(cell_suite(Elman)) == set()


def test_cell_suite_catches_a_step_that_fails_under_inference_mode():
    assert failing_checks(cell_suite(StepFailsUnderInference)) == {"test_step_under_inference_mode_matches_forward"}


def test_cell_suite_catches_a_cell_that_never_applies_dropout():
    assert failing_checks(cell_suite(NeverDropout)) == {"test_dropout_is_active_in_training_and_off_in_eval"}


def test_decoder_suite_catches_scores_that_are_not_the_models_log_probabilities():
    class Suite(DecoderContract):
        def make_decoder(self):
            return TopAWrongScores()

    assert failing_checks(Suite()) == {"test_scores_are_model_log_probabilities"}
    with pytest.raises(AssertionError, match="the model's own log-probability"):
        Suite().test_scores_are_model_log_probabilities()

"""Accuracy as an ``evaluate`` metric module that loads offline by path.

``evaluate.load("accuracy")`` fetches its script from the Hub; ltd-hub loads this file instead:
``evaluate.load(str(Path(ltd_hub.__file__).parent / "metrics" / "accuracy.py"))``.
"""

import datasets
import evaluate

_DESCRIPTION = "Accuracy: the fraction of predictions equal to their reference (here: rank-classification choice indices)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): gold labels.
    normalize (bool): return the fraction (True, default) or the count of correct predictions.
Returns:
    accuracy (float): in [0, 1] when normalize is True.
Example:
    >>> metric = evaluate.load("ltd_hub/evaluation/metrics/accuracy.py")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""
_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, normalize=True):
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": correct / len(references) if normalize and references else float(correct)}

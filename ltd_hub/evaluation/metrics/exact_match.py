"""Exact match of generated answers as an ``evaluate`` metric module that loads offline by path.

Both texts are compared after stripping surrounding whitespace and trailing punctuation and,
by default, case-folding, so "True." matches "true".
"""

import string

import datasets
import evaluate

_DESCRIPTION = "Exact match: the fraction of generated answers equal to their reference after light normalisation."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers.
    references (list of str): gold answers.
    ignore_case (bool): compare case-folded text (default True).
Returns:
    exact_match (float): in [0, 1].
Example:
    >>> metric = evaluate.load("ltd_hub/evaluation/metrics/exact_match.py")
    >>> metric.compute(predictions=["True.", "no"], references=["True", "Yes"])
    {'exact_match': 0.5}
"""
_CITATION = ""


def _normalise(text, ignore_case):
    text = " ".join(str(text).split()).strip().rstrip(string.punctuation).strip()
    return text.casefold() if ignore_case else text


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, ignore_case=True):
        hits = sum(_normalise(p, ignore_case) == _normalise(r, ignore_case) for p, r in zip(predictions, references))
        return {"exact_match": hits / len(references) if references else 0.0}

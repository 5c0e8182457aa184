"""The Tug-of-War of kairanzhao/RUM (surgical_plugins/analysis.py, analysis_mia.py) from a row's accuracies and
the retrain row's: plain arithmetic, so the runner's comparison metrics and the report (which fills it in for
records made before the runner stored it) share one formula without the report importing torch."""

from __future__ import annotations


def ratio(ours: float, theirs: float) -> float:
    """RUM's ratio_acc_*: 1 − |difference| / 100 for percentages."""
    return 1.0 - abs(ours - theirs) / 100.0


def tug_of_war(metrics: dict, retrain: dict) -> float:
    """(1 − da(D_f))·(1 − da(D_r))·(1 − da(T)), da = |accuracy − retrain's accuracy| as a fraction."""
    return ratio(metrics["UA"], retrain["UA"]) * ratio(metrics["RA"], retrain["RA"]) * ratio(metrics["TA"], retrain["TA"])


def tug_of_war_mia(metrics: dict, retrain: dict) -> float:
    """ToW with the MIA-efficacy difference in place of the forget accuracy's (RUM's analysis_mia.py)."""
    return ratio(metrics["MIA"], retrain["MIA"]) * ratio(metrics["RA"], retrain["RA"]) * ratio(metrics["TA"], retrain["TA"])

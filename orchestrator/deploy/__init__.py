"""From a trial to a model in use: ``corrotune export`` and ``corrotune predict``.

Example:
    >>> from orchestrator.deploy import export_study, predict_folder
    >>> [exported] = export_study("corrotune-results/demo", best=True, fmt="onnx")  # doctest: +SKIP
    >>> predict_folder(exported.out_dir, "/data/new_photos", "predictions.csv")  # doctest: +SKIP
"""

from orchestrator.deploy.export import TOLERANCE, ExportResult, export_study, export_trial
from orchestrator.deploy.predict import PredictSummary, card_summary, open_model, predict_folder
from orchestrator.deploy.trials import DeployError, StudyTrial, select_trials

__all__ = [
    "TOLERANCE",
    "DeployError",
    "ExportResult",
    "PredictSummary",
    "StudyTrial",
    "card_summary",
    "export_study",
    "export_trial",
    "open_model",
    "predict_folder",
    "select_trials",
]

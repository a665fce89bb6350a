"""Pose evaluation: ADD / ADD-S metrics, BOP datasets and results files, reports."""

from ockd_ros.eval.metrics import add_error, adds_error, auc, recall

__all__ = ["add_error", "adds_error", "auc", "recall"]

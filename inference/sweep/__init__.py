"""Hyperparameter × seed sweeps on Ray Tune: a study file expanded into Tune's search space
(:mod:`.study`), each trial the library's training and evaluation (:mod:`.trial`), run by a Tuner
with an optional ASHA scheduler (:mod:`.driver`), tabulated (:mod:`.tables`) and plotted (:mod:`.plots`).

    study = expand(apply_overrides(read_study_file("configs/sweeps/dip_study_quick.yaml"), []), out)
    rows = run_sweep(study, out)                      # or scheduler="asha", address="HOST:PORT"

Ray Tune and PyYAML are the ``sweep`` extra (:mod:`.extra`); this package imports without them.
"""

from .driver import MAX_FAILURES, SCHEDULERS, check_address, init_ray, make_scheduler, run_sweep, tune_space
from .extra import MissingExtraError, check_installed
from .nodes import attempts, node_id
from .plots import plot, series_of
from .study import Study, Trial, apply_overrides, block_space, expand, read_study_file, resolve, trial_name
from .tables import METRIC_FIELDS, TIMES, aggregate, collect, metric_columns, metric_values, write_tables
from .trial import TRIAL, is_finished, run_trial, train

__all__ = ["MAX_FAILURES", "SCHEDULERS", "check_address", "MissingExtraError", "check_installed",
           "attempts", "node_id", "init_ray", "make_scheduler", "run_sweep", "tune_space", "plot", "series_of",
           "Study", "Trial", "apply_overrides", "block_space", "expand", "read_study_file", "resolve",
           "trial_name", "METRIC_FIELDS", "TIMES", "aggregate", "collect", "metric_columns",
           "metric_values", "write_tables", "TRIAL", "is_finished", "run_trial", "train"]

"""Disentanglement metrics: each a function of arrays (``codes`` (N, D) float, ``factors`` (N, K)
int), plus ``compute_*`` wrappers that sample a ground-truth simulator through a representation
function (a batch of observations -> codes), following disentanglement_lib's protocols."""

from .active_units import ACTIVE_AT, active_units
from .beta_vae import CLASSIFIERS as BETA_VAE_CLASSIFIERS
from .beta_vae import beta_vae_features, beta_vae_points, beta_vae_score, compute_beta_vae, fixed_factor_labels
from .dci import IMPORTANCE_MODELS as DCI_IMPORTANCE_MODELS
from .dci import (completeness_from_importance, dci, disentanglement_from_importance,
                  importance_matrix)
from .downstream import downstream_accuracy, factor_accuracies
from .factor_vae import compute_factor_vae, factor_vae_score, factor_vae_votes, majority_vote_accuracy
from .information import (discrete_entropy, discrete_mutual_info, discretize, joint_counts,
                          mutual_info_matrix)
from .mig import mig, mig_terms
from .reconstruction import image_errors
from .sampling import fixed_factor_groups, represent_factors, sample_codes
from .sap import continuous_sap_matrix, discrete_sap_matrix, sap, top_two_gap

__all__ = ["ACTIVE_AT", "active_units", "BETA_VAE_CLASSIFIERS", "DCI_IMPORTANCE_MODELS", "beta_vae_features", "beta_vae_points",
           "beta_vae_score", "fixed_factor_labels",
           "compute_beta_vae", "completeness_from_importance",
           "dci", "disentanglement_from_importance", "importance_matrix", "downstream_accuracy",
           "factor_accuracies", "compute_factor_vae", "factor_vae_score", "factor_vae_votes",
           "majority_vote_accuracy", "discrete_entropy", "discrete_mutual_info", "discretize",
           "joint_counts", "mutual_info_matrix", "mig", "mig_terms", "image_errors", "fixed_factor_groups",
           "represent_factors", "sample_codes", "continuous_sap_matrix", "discrete_sap_matrix",
           "sap", "top_two_gap"]
from .conditioning import conditioning_measures, downstream_table, mlp_accuracy, normalised_code_mi  # noqa: E402,F401  (issue 8: MS-VAE M1–M4)

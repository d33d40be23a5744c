"""Sphinx configuration of the recgym documentation site.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W -b html docs docs/_build/html

Environment switches (all optional):

- ``RECGYM_DOCS_EXECUTE``: how myst-nb runs the notebooks: ``cache`` (default: executed at build
  time, re-run only when a notebook's code changes; the cache lives in
  ``docs/_build/.jupyter_cache``, so after changing library code use ``force`` or delete
  ``docs/_build``; CI builds from a clean clone), ``force`` (always re-run) or ``off`` (render
  the stored, output-free notebooks: fast, no figures). The kernel gets ``RECGYM_SMOKE=1``
  (the notebooks' small settings) unless the variable is already set.
- ``RECGYM_DOCS_INTERSPHINX=1``: link names of torch, gymnasium, stable-baselines3, numpy,
  pandas and Python to their sites. Off by default because fetching the inventories needs the
  network, which CI and the build machines do not have; when off, references to those packages
  render as plain code and are not reported as broken.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

# The notebook kernels inherit this process's environment.
os.environ.setdefault("RECGYM_SMOKE", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
if (ROOT.parent / "shared" / "data").is_dir():  # notebook 04 reads MovieLens from here
    os.environ.setdefault("RECGYM_DATA_DIR", str(ROOT.parent / "shared" / "data"))

project = "recgym"
author = "the recgym authors"
copyright = "the recgym authors, MIT licence"
release = version = "0.1.0"

extensions = [
    "myst_nb",  # MyST Markdown pages and executed notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "recgym_docs",  # docs/_ext: API pages from API_SECTIONS, figures, re-export references
]
INTERSPHINX = os.environ.get("RECGYM_DOCS_INTERSPHINX", "0") == "1"
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "gymnasium": ("https://gymnasium.farama.org", None),
    "stable_baselines3": ("https://stable-baselines3.readthedocs.io/en/master", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
}

EXTERNAL = (
    r"(torch|nn|numpy|np|pandas|pd|gymnasium|gym|stable_baselines3|matplotlib|tqdm|scipy"
    r"|os|collections|pathlib|typing|dataclasses|argparse|io|logging)"
)
# Offline these names cannot resolve; with intersphinx on, only what the inventories miss.
nitpick_ignore_regex = [
    (r"py:.*", EXTERNAL + r"(\..*)?"),
    (r"py:.*", r"(Tensor|Module|Axes|Figure|DataFrame|Series|ndarray|Generator|Path)"),
]

# .rst first: autosummary writes its stub pages with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_templates",
    "_ext",
    "results/*",  # CSVs and the benchmark PNG: linked as downloads, never pages
    "notebooks/README.md",  # the notebooks' own index; docs/notebooks.md is the site's
    "**/.ipynb_checkpoints",
    "conf.py",
]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_theme = "furo"
html_title = "recgym"
html_theme_options = {"source_repository": "", "navigation_with_keys": True}

# MyST: $...$ maths as in the notebooks, anchors for the pages' ``page.md#heading`` links.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4

nb_execution_mode = os.environ.get("RECGYM_DOCS_EXECUTE", "cache")
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600  # per cell; smoke cells take seconds
nb_execution_raise_on_error = True  # a failing notebook fails the build
nb_merge_streams = True
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # torch's own docstrings would reference torch internals
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: no second description of each attribute

# The public names of the three packages, grouped as the reference shows them. Every name of a
# package's ``__all__`` appears here exactly once (tests/test_docs_site.py checks it).
API_SECTIONS: dict[str, list[tuple[str, list[str]]]] = {
    "recgym": [
        ("Environment", ["ENV_ID", "BatchedRecEnv", "EnvConfig", "NextItemEnv",
                         "NextItemVectorEnv", "register_envs", "action_to_item",
                         "item_to_action", "SessionState", "append_items", "PAD"]),
        ("Rewards", ["RewardFn", "RewardOutput", "HitReward", "OracleReward"]),
        ("Data and splits", ["SequenceDataset", "ItemFactor", "ItemFactors", "binned_factor",
                             "categorical_factor", "multi_factor", "Split", "leave_one_out",
                             "ratio_split", "STAGES"]),
        ("Synthetic ground truth", ["SyntheticConfig", "SyntheticData", "make_synthetic",
                                    "SyntheticUserModel"]),
        ("Recommenders, rollouts and evaluation", ["Recommender", "PopularityRecommender",
                                                   "RandomRecommender", "RecommenderPolicy",
                                                   "UniformPolicy", "rollout", "RolloutResult",
                                                   "evaluate", "evaluate_ranks"]),
        ("Devices and errors", ["resolve_device", "RecGymError", "DataError", "ChecksumError",
                                "DatasetNotFoundError", "NotResetError", "RewardError"]),
    ],
    "rewards": [
        ("Reward models", ["RewardModel", "RewardForm", "REWARD_FORMS", "logits_to_reward",
                           "auc", "separation_accuracy"]),
        ("Multi-factor discriminator (MFGAN)", ["MultiFactorConfig", "MultiFactorDiscriminator",
                                                "combine", "SelfAttentionEncoder",
                                                "factor_scores_frame", "plot_factor_scores"]),
        ("Energy discriminator (EB-SeqGAN)", ["EnergyConfig", "EnergyDiscriminator"]),
        ("Reference rewards and wrappers", ["HitReward", "OracleReward",
                                            "FrozenRecommenderReward", "WeightedSum",
                                            "NormalizedReward", "DifferenceReward",
                                            "RewardFormWrapper"]),
        ("Negatives and pre-training", ["NegativeSampler", "ReplaceLastSampler",
                                        "PolicySampler", "ContinuationSampler", "real_sequences",
                                        "PretrainConfig", "PretrainResult",
                                        "pretrain_discriminator"]),
        ("Utilities", ["atomic_torch_save", "evaluating"]),
    ],
    "agents": [
        ("Policies", ["SequencePolicy", "SASRecConfig", "SASRecPolicy", "GRUConfig",
                      "GRUPolicy"]),
        ("Maximum likelihood and perturbations", ["MLEConfig", "MLETrainer", "MLEResult",
                                                  "WeightedMLEConfig", "WeightedMLEGenerator",
                                                  "PerturbationConfig", "fast_gradient_delta",
                                                  "adversarial_loss"]),
        ("Policy gradient and the adversarial loop", ["PGConfig", "PolicyGradientTrainer",
                                                      "AdversarialConfig", "AdversarialTrainer",
                                                      "GeneratorAlgorithm",
                                                      "plot_training_health"]),
        ("Quality against the true user", ["oracle_continuation_loglik", "cascading_error"]),
        ("Baselines: MF-BPR, APR, ACVAE", ["BPRConfig", "BPRMFRecommender", "BPRResult",
                                           "BPRTrainer", "APRConfig", "APRTrainer",
                                           "perturbation_robustness", "ACVAEConfig",
                                           "ACVAEPolicy", "ACVAETrainingConfig", "ACVAETrainer",
                                           "ACVAEResult", "latent_correlation"]),
        ("Experiments", ["ModelZoo", "ZooConfig", "FitResult"]),
    ],
}

"""ACVAE (Xie et al., WWW 2021): adversarial and contrastive VAE for sequential recommendation.

- :mod:`~agents.baselines.acvae.model`: the policy (:class:`ACVAEPolicy`) and its loss terms.
- :mod:`~agents.baselines.acvae.discriminators`: the AVB and contrastive discriminators.
- :mod:`~agents.baselines.acvae.training`: :class:`ACVAETrainer`.
- :mod:`~agents.baselines.acvae.gru_scan`: :func:`suffix_gru`, a GRU over each row's own steps.
- :mod:`~agents.baselines.acvae.analysis`: :func:`latent_correlation`.
"""

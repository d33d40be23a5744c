"""The papers' non-sequential and VAE baselines: MF-BPR, APR and ACVAE.

- :mod:`agents.baselines.mf`: the MF-BPR model (:class:`BPRMFRecommender`).
- :mod:`agents.baselines.bpr`: its BPR training loop (:class:`BPRTrainer`).
- :mod:`agents.baselines.apr`: adversarial personalised ranking (:class:`APRTrainer`).
- :mod:`agents.baselines.acvae`: ACVAE (model, discriminators, training, analysis).
"""

"""The experiment layer: the papers' systems with one set of defaults, runs, config files, the CLI.

- :mod:`agents.experiments.zoo`: :class:`ModelZoo`, every system of the tables by one name.
- :mod:`agents.experiments.runs`: the phases of ``recgym train`` and its checkpoints.
- :mod:`agents.experiments.config_files`: TOML/YAML sections -> frozen config dataclasses.
- :mod:`agents.experiments.cli`: the ``recgym`` command (every subcommand).
"""

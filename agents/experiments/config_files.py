"""Config files for the ``recgym`` command line: TOML (or YAML) sections -> frozen dataclasses.

A config file is a mapping of *sections*, one per config dataclass, e.g.::

    seed = 1
    data = "synthetic"

    [sasrec]
    dim = 64
    n_blocks = 2

    [mle]
    epochs = 20
    lr = 1e-3

:func:`load_config_file` reads it into a plain dict and :func:`build_config` turns one section,
overridden by command-line flags, into a validated frozen dataclass. Unknown keys raise an
error that lists the valid ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from recgym._checks import check_positive_int, is_int

T = TypeVar("T")

TOML_SUFFIXES = (".toml",)
YAML_SUFFIXES = (".yaml", ".yml")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.toml`` (``tomllib``) or ``.yaml``/``.yml`` (PyYAML, if installed) config file.

    Args:
        path: the file; its suffix picks the parser.

    Returns:
        The file's top-level mapping (an empty file gives ``{}``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, a parse error, or a top level that is not a mapping.
        ImportError: a YAML file but PyYAML is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in TOML_SUFFIXES:
        data = _load_toml(path)
    elif suffix in YAML_SUFFIXES:
        data = _load_yaml(path)
    else:
        raise ValueError(
            f"config file {str(path)!r} must end in one of {TOML_SUFFIXES + YAML_SUFFIXES}; "
            f"got suffix {suffix!r}"
        )
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ValueError(
            f"config file {str(path)!r} must hold a mapping of sections at the top level; "
            f"got a {type(data).__name__}"
        )
    return dict(data)


def _load_toml(path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as err:
            raise ImportError(
                "reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli"
            ) from err
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"cannot parse TOML config {str(path)!r}: {err}") from err


def _load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError as err:
        raise ImportError(
            f"config file {str(path)!r} is YAML but PyYAML is not installed: "
            "pip install pyyaml, or write the config as .toml"
        ) from err
    try:
        with path.open("r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse YAML config {str(path)!r}: {err}") from err


def config_keys(cls: type) -> tuple[str, ...]:
    """The constructor keys of a dataclass config, in declaration order."""
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise TypeError(f"cls must be a dataclass type; got {cls!r}")
    return tuple(f.name for f in fields(cls) if f.init)


def build_config(
    cls: type[T],
    file_section: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    section: str | None = None,
) -> T:
    """Build a frozen dataclass config from a file section overridden by flags.

    Precedence: the dataclass defaults, then ``file_section``, then ``overrides``. Override
    values that are ``None`` mean "flag not given" and are skipped. Lists (TOML/YAML arrays)
    become tuples for tuple-typed fields. The dataclass's own ``__post_init__`` validates values.

    Args:
        cls: the config dataclass, e.g. ``MLEConfig``.
        file_section: the file's section for this config (``None`` or ``{}`` when absent).
        overrides: command-line values by field name.
        section: the section's name, for error messages.

    Returns:
        ``cls(**merged)``.

    Raises:
        ValueError: a key is not a field of ``cls`` (the message lists the valid keys), or a
            section is not a mapping.
    """
    valid = config_keys(cls)
    where = f"[{section}]" if section else cls.__name__
    file_section = {} if file_section is None else file_section
    if not isinstance(file_section, Mapping):
        raise ValueError(
            f"config section {where} must be a table of key = value pairs; "
            f"got a {type(file_section).__name__}"
        )
    merged = dict(file_section)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in config section {where} for {cls.__name__}; "
            f"valid keys: {list(valid)}"
        )
    hints = _field_types(cls)
    for key, value in merged.items():
        if isinstance(value, list) and _is_tuple_type(hints.get(key)):
            merged[key] = tuple(value)
        nested = _nested_config(hints.get(key))
        if nested is not None and isinstance(value, Mapping):  # e.g. [adversarial.weighted_mle]
            merged[key] = build_config(nested, value, section=f"{section or cls.__name__}.{key}")
    return cls(**merged)


def check_sections(data: Mapping[str, Any], known: Mapping[str, Any], *, source: str) -> None:
    """Raise a clear error for top-level keys of a config file that nothing reads.

    Args:
        data: the loaded file.
        known: accepted top-level names (sections and scalar settings).
        source: the file name, for the message.
    """
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown top-level key(s) {unknown} in config file {source!r}; "
            f"valid keys: {sorted(known)}"
        )


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the raw strings
        return {f.name: f.type for f in fields(cls)}


def _nested_config(annotation: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else ``None``."""
    if isinstance(annotation, type) and is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation) if isinstance(a, type) and is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _is_tuple_type(annotation: Any) -> bool:
    if annotation is None:
        return False
    if isinstance(annotation, str):
        return "tuple" in annotation.lower()
    if annotation is tuple or typing.get_origin(annotation) is tuple:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(annotation))
    return False


# ---------------------------------------------------------------------- the train command's schema
ALGOS: tuple[str, ...] = ("mle", "mfgan", "ebseqgan", "sao", "reinforce")
MODELS: tuple[str, ...] = ("sasrec", "gru")
ALGO_ALIASES: dict[str, str] = {"ebgan": "ebseqgan"}
"""Former names still accepted (with a ``DeprecationWarning``) for one release."""
ADVERSARIAL_ALGOS = ("mfgan", "ebseqgan")

SECTIONS: dict[str, str] = {
    "synthetic": "recgym.synthetic:SyntheticConfig",
    "sasrec": "agents.sasrec:SASRecConfig",
    "gru": "agents.gru:GRUConfig",
    "mle": "agents.mle:MLEConfig",
    "perturbation": "agents.perturbation:PerturbationConfig",
    "reinforce": "agents.reinforce:PGConfig",
    "adversarial": "agents.adversarial_config:AdversarialConfig",
    "multifactor": "rewards.multifactor:MultiFactorConfig",
    "energy": "rewards.energy:EnergyConfig",
    "pretrain": "rewards.pretrain:PretrainConfig",
}
"""Config-file section -> the frozen dataclass it builds (``module:Class``, imported lazily)."""

QUICK_DEFAULTS: dict[str, dict[str, Any]] = {
    "sasrec": {"dim": 32, "n_blocks": 2},
    "gru": {"dim": 32, "hidden_size": 32},
    "mle": {"epochs": 6, "lr": 3e-3, "eval_every": 2, "patience": 2},
    "reinforce": {"batch_size": 256, "n_steps": 5, "lr": 1e-4},
    "adversarial": {
        "n_rounds": 10, "d_steps": 2, "eval_every": 10, "horizon": 5, "rollout_batch_size": 128,
        "d_batch_size": 256, "policy_lr": 1e-4, "disc_lr": 1e-3, "n_eval_users": 512,
    },
    "multifactor": {"dim": 32, "max_len": 20},
    "energy": {"dim": 32},
    "pretrain": {"batch_size": 256},
}  # fmt: skip
"""The CLI's defaults where they differ from the dataclasses': sized for a few CPU minutes."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The top-level settings of ``recgym train`` (the config file's top-level keys).

    Attributes:
        algo: one of :data:`ALGOS`.
        model: the policy network, ``"sasrec"`` or ``"gru"``.
        data: ``"synthetic"``, a dataset name of ``recgym.datasets`` or a path.
        data_dir: where named datasets live (default ``$RECGYM_DATA_DIR``).
        download: download MovieLens when missing.
        seed: seeds the data generation, the weights and every config's ``seed`` left unset.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... (never a silent fallback).
        out: output directory; ``None`` = ``runs/<algo>``.
        rounds: length of the phase after MLE: adversarial rounds (``mfgan``/``ebseqgan``, sets
            ``[adversarial] n_rounds``), perturbed epochs (``sao``, default 3) or policy-gradient
            updates (``reinforce``, default 20). Unused by ``mle``.
        progress: tqdm bars over MLE epochs and adversarial rounds (validation NDCG@10, ETA);
            ``recgym train`` turns them on when stderr is a terminal.
    """

    algo: str = "mfgan"
    model: str = "sasrec"
    data: str = "synthetic"
    data_dir: str | None = None
    download: bool = False
    seed: int = 0
    device: str = "cpu"
    out: str | None = None
    rounds: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.algo in ALGO_ALIASES:
            new = ALGO_ALIASES[self.algo]
            warnings.warn(f"algo {self.algo!r} is now {new!r}", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "algo", new)
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}; got {self.algo!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}; got {self.model!r}")
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data must be a dataset name or path; got {self.data!r}")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0; got {self.seed!r}")
        if self.rounds is not None:
            check_positive_int("rounds", self.rounds)
        for name in ("download", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class RunSettings:
    """Everything ``recgym train`` runs with: the top level and one config per section.

    Attributes:
        train: the top-level :class:`TrainConfig`.
        configs: section name -> its frozen config (every section of :data:`SECTIONS`).
    """

    train: TrainConfig
    configs: dict[str, Any]

    @property
    def out_dir(self) -> Path:
        """Where the run's files go."""
        return Path(self.train.out or f"runs/{self.train.algo}")

    @property
    def model_config(self) -> Any:
        """The policy network's config (``[sasrec]`` or ``[gru]``)."""
        return self.configs[self.train.model]

    def data_spec(self) -> dict[str, Any]:
        """How to rebuild the data: name, data_dir, download and the seed."""
        t = self.train
        return {"name": t.data, "data_dir": t.data_dir, "download": t.download, "seed": t.seed}


def resolve_settings(
    file: Mapping[str, Any], flags: Mapping[str, Any], *, source: str = ""
) -> RunSettings:
    """Merge the CLI's quick defaults, a loaded config file and command-line flags.

    Args:
        file: the :func:`load_config_file` dict (``{}`` without a file).
        flags: parsed flags by name (``None`` = not given): ``algo``, ``data``, ``data_dir``,
            ``download``, ``model``, ``device``, ``seed``, ``out``, ``rounds``, ``epochs``,
            ``max_len``, ``dim``, ``progress``.
        source: the file's name, for error messages.

    Raises:
        ValueError: unknown sections or keys (the valid ones are listed) or invalid values.
    """
    top_keys = config_keys(TrainConfig)
    check_sections(file, {**SECTIONS, **dict.fromkeys(top_keys)}, source=source)
    for name in SECTIONS:
        if name in file and not isinstance(file[name], Mapping):
            raise ValueError(f"[{name}] in {source!r} must be a table of settings")
    top = {k: file[k] for k in top_keys if k in file}
    train = build_config(TrainConfig, top, {k: flags.get(k) for k in top_keys}, section="top level")
    configs: dict[str, Any] = {}
    for name in SECTIONS:  # model sections first: adversarial reads the policy's max_len
        cls = _import_config(name)
        base = dict(QUICK_DEFAULTS.get(name, {}))
        if "seed" in config_keys(cls):
            base["seed"] = train.seed
        if name == "adversarial" and "max_len" not in file.get(name, {}):
            base["max_len"] = configs[train.model].max_len
        section = {**base, **file.get(name, {})}
        overrides = _flag_overrides(name, train, flags)
        configs[name] = build_config(cls, section, overrides, section=name)
    return RunSettings(train, configs)


def _flag_overrides(name: str, train: TrainConfig, flags: Mapping[str, Any]) -> dict[str, Any]:
    if name == train.model:
        return {"max_len": flags.get("max_len"), "dim": flags.get("dim")}
    if name == "mle":
        return {"epochs": flags.get("epochs")}
    if name == "adversarial":
        rounds = train.rounds if train.algo in ADVERSARIAL_ALGOS else None
        progress = True if train.progress else None  # a file's own setting stands otherwise
        return {"n_rounds": rounds, "max_len": flags.get("max_len"), "progress": progress}
    return {}


def _import_config(section: str) -> type:
    import importlib

    module, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), name)

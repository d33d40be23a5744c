"""The ``recgym`` command line, with training: ``train``, ``evaluate CKPT`` and ``rollout CKPT``.

``recgym train`` (no arguments) is the main job: on the embedded synthetic data it pre-trains a
SASRec policy by maximum likelihood, runs a short adversarial MFGAN phase against multi-factor
discriminators, and prints leave-one-out test metrics (full ranking and uniform-100) of both
next to the popularity baseline and the true user model (the oracle)::

    recgym train                                   # ~2-3 min on 2 CPU cores
    recgym train mle --data ml-100k --epochs 50 --out runs/ml100k
    recgym train ebseqgan --config my.toml --device cuda
    recgym evaluate runs/mfgan/checkpoint.pt
    recgym rollout runs/mfgan/checkpoint.pt --user 3 --steps 10
    recgym train mle --nproc 2                     # data-parallel: re-executes under torchrun
    torchrun --nproc-per-node 2 -m agents.experiments.cli train mle   # the same

Algorithms: ``mle`` (SASRec/GRU4Rec by maximum likelihood), ``sao`` (then APR/SAO adversarial
embedding perturbations), ``reinforce`` (then REINFORCE on the true user model's log-likelihood
for synthetic data, on logged-item hits otherwise), ``mfgan`` / ``ebseqgan`` (then adversarial
rounds against a multi-factor / energy discriminator). Every setting lives in a frozen config
dataclass; a ``--config`` TOML (or YAML) file sets them per section (``[sasrec]``, ``[mle]``,
``[adversarial]``, ... see :data:`agents.experiments.config_files.SECTIONS`) and flags
override the file.

``recgym demo`` (the default), ``recgym data`` and ``recgym reference popularity|random`` come
from :func:`recgym.cli.add_commands`: one parser, where the subcommand alone decides what runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pandas as pd
import torch

from agents import distributed
from agents.experiments.config_files import (
    ALGO_ALIASES,
    ALGOS,
    MODELS,
    load_config_file,
    resolve_settings,
)
from agents.experiments.launch import distributed_run, exec_torchrun, under_torchrun
from agents.experiments.runs import (
    LABELS,
    PHASES,
    TEST_PROTOCOLS,
    RunData,
    build_policy,
    load_run,
    load_run_data,
    mle_phase,
    policy_metrics,
    prepare_out_dir,
    rebuild_policy,
    rebuild_reward_model,
    reference_metrics,
    save_run,
)
from recgym._checks import check_n_items
from recgym.cli import HANDLERS as RECGYM_HANDLERS
from recgym.cli import add_commands, normalize_argv, summary_table
from recgym.device import resolve_device
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.errors import RecGymError
from recgym.evaluation import evaluate
from recgym.reference import HitReward, OracleReward


def run_train(args: argparse.Namespace) -> None:
    """Train a policy, print the test-metrics table and write the checkpoint."""
    start = time.perf_counter()
    file = load_config_file(args.config) if args.config else {}
    flags = dict(vars(args))
    if flags.get("progress") is None and "progress" not in file:
        flags["progress"] = sys.stderr.isatty()  # bars for a person, none in logs and CI
    overwrite = bool(flags.pop("overwrite", False))
    nproc = flags.pop("nproc", None)
    settings = resolve_settings(file, flags, source=args.config or "")
    if nproc is not None and nproc > 1 and not under_torchrun():
        return exec_torchrun(args.argv, nproc)
    with distributed_run(resolve_device(settings.train.device)) as context:
        _train(settings, overwrite, start, context)


def _train(settings, overwrite: bool, start: float, context) -> None:
    run = settings.train
    device = resolve_device(run.device) if context is None else context.device
    print(f"== recgym train {run.algo}: data={run.data}, model={run.model}, seed={run.seed}, "
          f"device={device}, out={settings.out_dir}"
          + (f", {context.world_size} ranks ({context.backend})" if context else ""))  # fmt: skip
    resumed = _prepare_out_dir(settings.out_dir, overwrite)
    if resumed:
        print(f"== resuming the interrupted run in {settings.out_dir} (phases: {resumed}; "
              "--overwrite starts afresh)")  # fmt: skip
    tic = time.perf_counter()
    data = load_run_data(settings.data_spec(), settings.configs["synthetic"], device=device)
    print(f"== data: {data.dataset} ({time.perf_counter() - tic:.1f} s)")
    frames, quality = reference_metrics(data, settings, device)
    policy = build_policy(settings, data.dataset.n_items).to(device)
    label, histories, reward_model = LABELS[run.model], {}, None
    histories["mle"] = _timed("MLE", mle_phase, policy, data, settings, device)
    policy_metrics(f"{label} MLE", policy, data, settings, device, frames, quality)
    if run.algo != "mle":
        phase = PHASES[run.algo]
        histories[run.algo], reward_model = _timed(
            run.algo.upper(), phase, policy, data, settings, device
        )
        policy_metrics(f"{label} {run.algo.upper()}", policy, data, settings, device, frames,
                        quality)  # fmt: skip
    table = summary_table(frames)
    note = f"leave-one-out, all {data.split.n_targets('test')} users, pessimistic ties"
    if quality:
        table[("generation", "oracle loglik")] = pd.Series(quality)
        note += "; oracle loglik = true mean log p of generated 5-item continuations"
    print(f"\n== test metrics: {note}")
    print(table.round(4).to_string())
    final = frames[list(frames)[-1]]
    path = save_run(settings, data, policy, reward_model, final, histories) if (
        distributed.is_main_process()) else settings.out_dir / "checkpoint.pt"  # fmt: skip
    distributed.barrier()
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s in all)")
    print(f"next: recgym evaluate {path}  |  recgym rollout {path} --user 0 --steps 10")


def _prepare_out_dir(out, overwrite: bool) -> list[str]:
    """``prepare_out_dir``; with ``overwrite`` rank 0 alone deletes, the others wait."""
    if not overwrite:
        return prepare_out_dir(out, overwrite=False)  # read-only: every rank agrees
    if distributed.is_main_process():
        prepare_out_dir(out, overwrite=True)
    distributed.barrier()
    return []


def _timed(name: str, phase, *args):
    tic = time.perf_counter()
    result = phase(*args)
    print(f"== {name} done ({time.perf_counter() - tic:.1f} s)")
    return result


def run_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a checkpoint's policy on a split stage; print a metric x protocol table."""
    checkpoint = load_run(args.checkpoint)
    data = _checkpoint_data(checkpoint, args)
    device = resolve_device(args.device)
    policy = rebuild_policy(checkpoint["policy"], device=device)
    _check_items(policy.n_items, data, args.checkpoint)
    tic = time.perf_counter()
    frame = evaluate(
        policy, data.split, args.stage, protocols=args.protocols, ks=args.ks,
        max_len=policy.max_len, device=device, seed=args.seed,
    )  # fmt: skip
    name = f"{checkpoint['policy_name']} ({checkpoint['algo']})"
    elapsed = time.perf_counter() - tic
    print(f"== {name} on {data.dataset.name}, stage {args.stage} ({elapsed:.1f} s)")
    labels = frame["metric"] + frame["k"].map(lambda k: "" if pd.isna(k) else f"@{int(k)}")
    table = frame.assign(metric=labels).pivot(index="metric", columns="protocol", values="value")
    print(table.loc[labels.unique(), list(dict.fromkeys(frame["protocol"]))].round(4).to_string())


# ---------------------------------------------------------------------- rollout
def run_rollout(args: argparse.Namespace) -> None:
    """Roll a checkpoint's policy out for one user; print the items and per-factor rewards."""
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    checkpoint = load_run(args.checkpoint)
    data = _checkpoint_data(checkpoint, args)
    device = resolve_device(args.device)
    policy = rebuild_policy(checkpoint["policy"], device=device)
    _check_items(policy.n_items, data, args.checkpoint)
    reward_fn, reward_name = _rollout_reward(checkpoint, data, device)
    config = EnvConfig(max_len=policy.max_len, horizon=args.steps, stage="test", start="history")
    env = BatchedRecEnv(data.split, reward_fn, config, batch_size=1, device=device, seed=args.seed)
    if not 0 <= args.user < data.dataset.n_users:
        raise ValueError(f"--user must be a user index in [0, {data.dataset.n_users - 1}]")
    env.reset(users=torch.tensor([args.user]))
    generator = torch.Generator(device=env.device).manual_seed(args.seed)
    history = env.state.history[0]
    raw = data.dataset.item_ids
    shown = [str(raw[i]) for i in history[history > 0].tolist()[-10:]]
    print(f"== user {args.user} ({data.dataset.user_ids[args.user]}): last items {shown}")
    print(f"== {args.steps} steps of {checkpoint['policy_name']} ({checkpoint['algo']}), "
          f"{'greedy' if args.greedy else 'sampled'}, reward = {reward_name}")  # fmt: skip
    rows = [_rollout_step(env, policy, data, generator, args, t) for t in range(args.steps)]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4f}"))


def _rollout_step(env, policy, data: RunData, generator, args, step: int) -> dict:
    state = env.state
    item = policy.act(state, generator, greedy=args.greedy, exclude_seen=not args.allow_repeats)
    row: dict = {"step": step + 1, "item": int(item[0]), "raw id": data.dataset.item_ids[item[0]]}
    logged = int(state.target[0])
    row["logged next"] = data.dataset.item_ids[logged] if logged else "-"
    if data.user_model is not None:
        log_p = data.user_model.log_prob(state.history, state.user)  # (1, n_items + 1)
        row["oracle p"] = float(log_p[0, item[0]].exp())
    _, reward, _, _, info = env.step(item)
    row["reward"] = float(reward[0])
    for key, value in info.items():
        if key.startswith("reward/"):
            row[key.removeprefix("reward/")] = float(value[0])
    return row


def _rollout_reward(checkpoint: dict, data: RunData, device: torch.device):
    if checkpoint.get("reward_model") is not None:
        model = rebuild_reward_model(checkpoint["reward_model"], device=device)
        return model, f"the checkpoint's {type(model).__name__}"
    if data.user_model is not None:
        return OracleReward(data.user_model), "true user log-likelihood (oracle)"
    return HitReward(), "hit of the logged next item"


def _checkpoint_data(checkpoint: dict, args: argparse.Namespace) -> RunData:
    spec = dict(checkpoint["data"])
    if args.data is not None:
        spec.update(name=args.data, data_dir=args.data_dir, download=args.download)
    return load_run_data(spec, spec.get("synthetic"), device=resolve_device(args.device))


def _check_items(n_items: int, data: RunData, path: str) -> None:
    check_n_items(
        f"checkpoint {path!r}", n_items, data.dataset.n_items,
        fix=f"the data {data.dataset.name!r} differ; pass the --data it was trained on",
    )  # fmt: skip


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The parser of ``train``, ``evaluate CKPT`` and ``rollout CKPT`` (others: recgym.cli)."""
    parser = argparse.ArgumentParser(
        prog="recgym",
        description="Adversarial sequential recommendation as RL.",
        epilog="`recgym` alone runs `recgym demo`, the main job on the synthetic data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    _train_parser(sub)
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a trained checkpoint",
        description="Evaluate a `recgym train` checkpoint (`recgym reference popularity|random "
        "--data ...` evaluates a reference recommender).",
    )
    ev.add_argument("checkpoint", help="a checkpoint.pt written by `recgym train`")
    ev.add_argument("--stage", default="test", choices=("valid", "test"))
    ev.add_argument("--protocols", nargs="+", default=[*TEST_PROTOCOLS, "popularity-100"])
    ev.add_argument("--ks", nargs="+", type=int, default=[1, 5, 10, 20])
    ro = sub.add_parser("rollout", help="recommend a sequence to one user with a checkpoint")
    ro.add_argument("checkpoint", help="a checkpoint.pt written by `recgym train`")
    ro.add_argument("--user", type=int, required=True, help="user index")
    ro.add_argument("--steps", type=int, default=10, help="items to recommend")
    ro.add_argument("--greedy", action="store_true", help="top item instead of sampling")
    ro.add_argument("--allow-repeats", action="store_true", help="allow items already seen")
    for p in (ev, ro):
        p.add_argument("--data", default=None, help="default: the data it was trained on")
        p.add_argument("--data-dir", default=None)
        p.add_argument("--download", action="store_true")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (no fallback)")
        p.add_argument("--seed", type=int, default=0)
    return parser


def _train_parser(sub) -> None:
    tr = sub.add_parser(
        "train",
        help="train a policy (default: SASRec MLE + a short MFGAN run on synthetic data)",
        description="Train a policy. Precedence: the CLI's quick defaults < --config file < "
        "flags. Without arguments: the embedded ~3-minute synthetic MFGAN run.",
    )
    tr.add_argument(
        "algo", nargs="?", default=None, choices=(*ALGOS, *ALGO_ALIASES), help="default: mfgan"
    )
    tr.add_argument("--data", default=None, help="synthetic | ml-100k | amazon-beauty | PATH")
    tr.add_argument("--data-dir", default=None, help="where the datasets live")
    tr.add_argument("--download", action="store_true", default=None, help="download if missing")
    tr.add_argument("--model", default=None, choices=MODELS, help="policy network (sasrec)")
    tr.add_argument("--config", default=None, help="a .toml (or .yaml) file of config sections")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (no fallback)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--epochs", type=int, default=None, help="MLE (pre-)training epochs")
    tr.add_argument("--rounds", type=int, default=None, help="adversarial rounds / PG updates")
    tr.add_argument("--max-len", type=int, default=None, help="history window of the policy")
    tr.add_argument("--dim", type=int, default=None, help="embedding size of the policy")
    tr.add_argument("--out", default=None, help="output directory (default runs/<algo>)")
    tr.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="tqdm bars over epochs and rounds (default: when stderr is a terminal)",
    )  # fmt: skip
    tr.add_argument("--nproc", type=int, default=None,
                    help="train data-parallel on N processes (re-executes under torchrun; "
                    "CPU: gloo, CUDA: nccl, one GPU per rank)")  # fmt: skip
    tr.add_argument("--overwrite", action="store_true",
                    help="replace a finished or interrupted run in --out (default: refuse a "
                    "finished one, resume an interrupted one)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recgym`` console script: one parser, every subcommand."""
    argv = normalize_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = list(argv)  # --nproc re-executes the same command under torchrun
    handlers = {"train": run_train, "evaluate": run_evaluate, "rollout": run_rollout}
    try:
        (handlers | RECGYM_HANDLERS)[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RecGymError) as err:
        print(f"recgym: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

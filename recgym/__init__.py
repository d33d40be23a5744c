"""recgym: sequential recommendation as a Gymnasium environment.

State = a user's item history, action = the next item to recommend, transition = the item is
appended. The batched torch core steps thousands of users at once; ``gymnasium.make`` and
``gymnasium.make_vec`` wrap it. Rewards are any :class:`recgym.types.RewardFn`.
"""

from recgym.data import SequenceDataset
from recgym.device import resolve_device
from recgym.errors import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    NotResetError,
    RecGymError,
    RewardError,
)
from recgym.factors import ItemFactor, ItemFactors, binned_factor, categorical_factor, multi_factor
from recgym.splits import STAGES, Split, leave_one_out, ratio_split
from recgym.types import PAD, Recommender, RewardFn, RewardOutput, SessionState, append_items

__version__ = "0.1.0"

__all__ = [
    "PAD",
    "STAGES",
    "ChecksumError",
    "DataError",
    "DatasetNotFoundError",
    "ItemFactor",
    "ItemFactors",
    "NotResetError",
    "RecGymError",
    "Recommender",
    "RewardError",
    "RewardFn",
    "RewardOutput",
    "SequenceDataset",
    "SessionState",
    "Split",
    "append_items",
    "binned_factor",
    "categorical_factor",
    "leave_one_out",
    "multi_factor",
    "ratio_split",
    "resolve_device",
]

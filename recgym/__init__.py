"""recgym: sequential recommendation as a Gymnasium environment.

State = a user's item history, action = the next item to recommend, transition = the item is
appended. The batched torch core steps thousands of users at once; ``gymnasium.make`` and
``gymnasium.make_vec`` wrap it. Rewards are any :class:`recgym.types.RewardFn`.
"""

from recgym.data import SequenceDataset
from recgym.device import resolve_device
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.errors import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    NotResetError,
    RecGymError,
    RewardError,
)
from recgym.evaluation import evaluate, evaluate_ranks
from recgym.factors import ItemFactor, ItemFactors, binned_factor, categorical_factor, multi_factor
from recgym.gym_env import (
    ENV_ID,
    NextItemEnv,
    NextItemVectorEnv,
    action_to_item,
    item_to_action,
    register_envs,
)
from recgym.recommenders import PopularityRecommender, RandomRecommender
from recgym.reference import HitReward, OracleReward
from recgym.rollout import RecommenderPolicy, RolloutResult, UniformPolicy, rollout
from recgym.splits import STAGES, Split, leave_one_out, ratio_split
from recgym.synthetic import SyntheticConfig, SyntheticData, make_synthetic
from recgym.types import PAD, Recommender, RewardFn, RewardOutput, SessionState, append_items
from recgym.user_model import SyntheticUserModel

__version__ = "0.1.0"

register_envs()  # gymnasium.make("recgym/NextItem-v0") and make_vec work after `import recgym`

__all__ = [
    "ENV_ID",
    "BatchedRecEnv",
    "EnvConfig",
    "HitReward",
    "NextItemEnv",
    "NextItemVectorEnv",
    "OracleReward",
    "PopularityRecommender",
    "RandomRecommender",
    "RecommenderPolicy",
    "RolloutResult",
    "SyntheticConfig",
    "SyntheticData",
    "SyntheticUserModel",
    "UniformPolicy",
    "action_to_item",
    "evaluate",
    "evaluate_ranks",
    "item_to_action",
    "make_synthetic",
    "register_envs",
    "rollout",
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

"""Recommenders behind one interface (`base.Recommender`), model selection and business rules.

Importing this package registers every model class, so `Recommender.load` can read any of them.
"""

from models.recommenders.association import CoPurchaseRecommender
from models.recommenders.base import NotFittedError, Recommender, top_k
from models.recommenders.blend import BlendRecommender
from models.recommenders.ease import EASERecommender
from models.recommenders.factorization import ALSRecommender, BPRRecommender
from models.recommenders.latent import LatentClassRecommender
from models.recommenders.neighbours import ItemKNNRecommender
from models.recommenders.popularity import (
    CategoryAffinityRecommender,
    PopularityRecommender,
    RepeatPurchaseRecommender,
    TrendingRecommender,
)
from models.recommenders.repeat_cycle import RepeatCycleRecommender, RepeatFrequencyRecommender
from models.recommenders.rerank import RerankRecommender

__all__ = [
    "ALSRecommender",
    "BPRRecommender",
    "BlendRecommender",
    "CategoryAffinityRecommender",
    "CoPurchaseRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "LatentClassRecommender",
    "NotFittedError",
    "PopularityRecommender",
    "Recommender",
    "RepeatCycleRecommender",
    "RepeatFrequencyRecommender",
    "RepeatPurchaseRecommender",
    "RerankRecommender",
    "TrendingRecommender",
    "top_k",
]

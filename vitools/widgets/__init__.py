"""Interactive explorers built on :mod:`vitools.plots` (see :class:`Explorer` for the pattern)."""
from .base import Explorer
from .variance import VarianceExplorer
from .implicit import ImplicitAccuracyExplorer
from .sbn import NVILVarianceExplorer, MultiSampleSNRExplorer
from .vae import LatentWalker
from .relaxed import ConcreteExplorer, RebarExplorer
from .smc import BoundExplorer

__all__ = ["Explorer", "VarianceExplorer", "ImplicitAccuracyExplorer", "NVILVarianceExplorer",
           "MultiSampleSNRExplorer", "LatentWalker", "ConcreteExplorer", "RebarExplorer",
           "BoundExplorer"]

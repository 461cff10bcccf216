"""The shared analysis layer. Analyses see models only through protocols (:mod:`zoo.analysis.protocols`).

    >>> from zoo.analysis import list_analyses, get_analysis
    >>> get_analysis("curvature")(zoo.load("random-net/tanh"), zoo.task("random-net/tanh"))
"""

from .protocols import (LayeredMap, MapStack, ReadoutDynamics, RecurrentDynamics, SpatialMaps, StimulusResponse,
                        UnrolledInTime, as_layered_map, provides)
from .registry import AnalysisResult, get_analysis, list_analyses, register_analysis

__all__ = [
    "AnalysisResult", "LayeredMap", "MapStack", "ReadoutDynamics", "RecurrentDynamics", "SpatialMaps",
    "StimulusResponse", "UnrolledInTime", "as_layered_map", "get_analysis", "list_analyses", "provides", "register_analysis",
]

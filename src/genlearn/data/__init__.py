"""Where samples come from: named sources, file formats, binarization, validation, the empirical distribution."""
from genlearn.data.dataset import Dataset
from genlearn.data.empirical import EmpiricalDistribution, empirical_entropy
from genlearn.data.registry import list_sources, load_dataset, parse_spec, register_source

__all__ = ["Dataset", "EmpiricalDistribution", "empirical_entropy", "list_sources", "load_dataset",
           "parse_spec", "register_source"]

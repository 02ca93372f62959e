"""Registration of the core families: coin, die, Gaussian, product of Bernoullis."""
from genlearn.errors import ConfigError
from genlearn.models.categorical import Categorical
from genlearn.models.gaussian import Gaussian
from genlearn.models.product import Bernoulli, ProductBernoulli
from genlearn.models.registry import ModelSpec, Option, register_model


def _coin(dataset, options):
    if dataset.n_features != 1:
        raise ConfigError(f"bernoulli models one binary variable; the data have {dataset.n_features} "
                          "(use product-bernoulli)")
    return Bernoulli()


register_model(ModelSpec("bernoulli", Bernoulli, "a coin: one Bernoulli(p) variable", ("binary",), _coin))
register_model(ModelSpec(
    "categorical", Categorical, "a die: K outcomes with probabilities softmax(theta)", ("categorical",),
    lambda ds, o: Categorical(ds.n_categories),
))
register_model(ModelSpec(
    "product-bernoulli", ProductBernoulli, "independent Bernoulli pixels (the baseline for binary images)",
    ("binary",), lambda ds, o: ProductBernoulli(ds.n_features),
))
register_model(ModelSpec(
    "gaussian", Gaussian, "Gaussian for real data, diagonal or full covariance", ("real",),
    lambda ds, o: Gaussian(ds.n_features, o["covariance"]),
    options={"covariance": Option(str, "diag", "Gaussian covariance: diag or full", ("diag", "full"))},
))

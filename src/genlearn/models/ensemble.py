"""An equal-weight mixture of fitted models, as `genlearn tune --ensemble K` builds from its best trials.

    P(x) = (1/K) sum_k P_k(x),    log P(x) = logsumexp_k log P_k(x) - log K    (nats per example)

It is exact when every member's log_prob is, so members are models with an exact likelihood (FVSBN, NADE, MADE,
mixtures, product models; not energy or latent-variable models, whose log P(x) is estimated). By Jensen's
inequality log P(x) >= (1/K) sum_k log P_k(x) on every row: the mixture is never worse than its members' mean.
It samples by drawing a member uniformly, then x from it. It is not fitted itself (its members were), so it is
not a family of `genlearn fit`; its run folder is read back by `genlearn eval` / `sample` and `load_run`."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from genlearn.errors import ConfigError
from genlearn.models.base import EnergyModel, GenerativeModel, LatentVariableModel, check_positive_int


class Ensemble(GenerativeModel):
    """The equal-weight mixture of `members` (fitted models of the same data: same support and n_features)."""

    name = "ensemble"

    def __init__(self, members: list[GenerativeModel]):
        super().__init__()
        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one member model")
        for m in members:
            if not isinstance(m, GenerativeModel) or isinstance(m, (EnergyModel, LatentVariableModel)) \
                    or not m.tractable:
                raise ConfigError(f"ensemble members need an exact, tractable log P(x); {getattr(m, 'name', m)!r} "
                                  "has not (energy and latent-variable models are estimated)")
        shapes = {(m.support, m.n_features, getattr(m, "n_categories", None)) for m in members}
        if len(shapes) != 1:
            raise ConfigError(f"ensemble members must model the same data (support, features): got {sorted(shapes)}")
        self.members = torch.nn.ModuleList(members)
        self.support, self.n_features = members[0].support, members[0].n_features
        if getattr(members[0], "n_categories", None) is not None:
            self.n_categories = members[0].n_categories

    @property
    def ensemble_size(self) -> int:
        return len(self.members)

    def member_log_prob(self, x: Tensor, k: int) -> Tensor:
        if not (isinstance(k, int) and 0 <= k < len(self.members)):
            raise ConfigError(f"the ensemble has members 0 to {len(self.members) - 1}, not {k!r}")
        return self.members[k].log_prob(x)

    def log_prob(self, x: Tensor) -> Tensor:
        """log (1/K) sum_k P_k(x) per row, nats, float64 (the members' log-probabilities summed in float64)."""
        logp = torch.stack([m.log_prob(x).double() for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """k ~ uniform over the members, then x ~ P_k: (n, n_features), in the order drawn."""
        n = check_positive_int(n, "number of samples")
        k = torch.randint(len(self.members), (n,), generator=generator)
        out = None
        for j, member in enumerate(self.members):
            rows = (k == j).nonzero().flatten()
            if rows.numel():
                x = member.sample(int(rows.numel()), generator=generator)
                out = x.new_zeros((n, *x.shape[1:])) if out is None else out
                out[rows] = x.to(out.dtype)
        return out

    def config(self) -> dict:
        return {"members": [{"model": m.name, "config": m.config()} for m in self.members]}

    @classmethod
    def from_config(cls, config: dict, build=None) -> "Ensemble":
        """Rebuild from `config()` with build(family, member_config) -> model for each member (the registry's
        build_from_config, which calls this with itself for a saved "ensemble")."""
        members = config.get("members")
        if not isinstance(members, list) or not all(isinstance(m, dict) and "model" in m for m in members):
            raise ConfigError("an ensemble's config is {'members': [{'model': NAME, 'config': {...}}, ...]}")
        if build is None:
            raise ConfigError("rebuild an ensemble with genlearn.models.registry.build_from_config('ensemble', config)")
        return cls([build(m["model"], m.get("config") or {}) for m in members])

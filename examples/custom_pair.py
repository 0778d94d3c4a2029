"""Your own model/guide pair, fitted with our regularised ELBOs.

The pair below uses nothing from this project: a Pyro model with a 2-D latent site "code" inside a
plate that carries the dataset size, and an amortized guide for it. Any ELBO of
``inference.elbos`` fits it; tell it the site's name with ``site=``.

    python examples/custom_pair.py [--steps 300]
"""

import argparse

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import ppl_data
from inference.elbo import TermsELBO
from inference.elbos import BetaELBO, BetaTCELBO, CapacityELBO, DIPELBO, FactorELBO, InfoELBO


class MoonsPair(nn.Module):
    """p(code) = N(0, I), x | code ~ N(decoder(code), 0.1²); q(code | x) = N(encoder(x))."""

    def __init__(self, dataset_size: int, latent_dim: int = 2):
        super().__init__()
        self.n, self.d = dataset_size, latent_dim
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 50), nn.ReLU(), nn.Linear(50, 2))
        self.encoder = nn.Sequential(nn.Linear(2, 50), nn.ReLU(), nn.Linear(50, 2 * latent_dim))

    def model(self, x, index):
        pyro.module("moons_decoder", self.decoder)
        with pyro.plate("points", self.n, subsample=index):
            code = pyro.sample("code", dist.Normal(x.new_zeros(len(x), self.d), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(code), 0.1).to_event(1), obs=x)

    def guide(self, x, index):
        pyro.module("moons_encoder", self.encoder)
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        with pyro.plate("points", self.n, subsample=index):
            pyro.sample("code", dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1))


def elbos():
    return {"elbo": TermsELBO(), "beta": BetaELBO(site="code"),
            "capacity": CapacityELBO(c_stop=200, site="code"), "betatc": BetaTCELBO(site="code"),
            "factor": FactorELBO(latent_dim=2, site="code"), "dip1": DIPELBO("i", site="code"),
            "dip2": DIPELBO("ii", site="code"), "info": InfoELBO(site="code")}


def main(steps: int, batch_size: int = 100) -> dict:
    data = ppl_data.two_moons(n=2000)
    x_all, _ = data.batch(torch.arange(len(data)))
    results = {}
    for name, loss in elbos().items():
        pyro.set_rng_seed(0)
        pair = MoonsPair(len(data))
        optimizer = torch.optim.Adam(pair.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(steps):
            index = torch.randint(len(data), (batch_size,), generator=generator)
            optimizer.zero_grad()
            loss.loss_and_grads(pair.model, pair.guide, x_all[index], index)  # what SVI.step calls
            optimizer.step()
        results[name] = {k: round(float(v), 4) for k, v in loss.terms.items()}
        print(f"{name:9s}", "  ".join(f"{k}={v:.4g}" for k, v in results[name].items()))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    main(parser.parse_args().steps)

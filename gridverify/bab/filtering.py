"""GenBaB filtering: BBPS proposes, a true bound of the children decides.

BBPS scores every candidate neuron cheaply (root linear bounds as shortcuts); its estimate can rank a
neuron high whose split does not help once the intermediate intervals and betas are accounted for. Filtering
(Shi et al. 2024, the setting alpha-beta-CROWN uses on ml4acopf) keeps the ``top_k`` candidates of each
domain, splits each domain on each of them, bounds all ``2 * B * top_k`` children in one batched pass (one
CROWN step with the parent's alphas and betas) and picks, per domain, the candidate whose worse child has
the lowest certified bound (ties: the higher BBPS score, which comes first). The few widest neurons (width x
|coefficient|) join the candidates: BBPS estimates with the root's linear bounds and default lines, and can
rank low a neuron whose split pays once intermediate intervals are refreshed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gridverify.bab.bound import BoundConfig, Bounded, bound_domains
from gridverify.bab.branching import Choice, width_scores
from gridverify.bab.domains import Domains, Problem, select
from gridverify.bab.relations import Relations
from gridverify.bab.split import points, split_neurons


@dataclass(frozen=True)
class FilterConfig:
    """How many BBPS candidates per domain get a true bound of their children, and with how many steps."""

    top_k: int = 4  # bench/bab.py: as many decided as 8, faster (37/96 in 53 s vs 60 s)
    width_candidates: int = 2  # also try the widest neurons (BBPS's shortcut estimates can miss them)
    steps: int = 1
    max_children: int = 1280  # children bounded at once: fewer candidates per domain in large batches


def top_candidates(scores: dict[int, Tensor], k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best (node, flat index) per domain over all split nodes, best first: each (B, k'), with
    ``k' = min(k, candidates)``, and a mask (B, k') of candidates that are splittable (finite score)."""
    nodes = sorted(scores)
    flat = torch.cat([scores[z] for z in nodes], 1)
    sizes = torch.tensor([scores[z].shape[1] for z in nodes], device=flat.device)
    starts = torch.cumsum(sizes, 0) - sizes
    top, where = flat.topk(min(k, flat.shape[1]), dim=1)
    owner = torch.searchsorted(torch.cumsum(sizes, 0), where, right=True)
    node = torch.tensor(nodes, device=flat.device)[owner]
    return node, where - starts[owner], torch.isfinite(top)


def filtered_choice(
    problem: Problem,
    b: Bounded,
    scores: dict[int, Tensor],
    tables: bool,
    bound: BoundConfig,
    config: FilterConfig,
    relations: Relations | None = None,
) -> Choice:
    """Per domain, the candidate among BBPS's top ``k`` whose children bound best (see module doc), the
    children's related neurons narrowed by ``relations`` (`gridverify.bab.relations`)."""
    d = b.domains
    per_domain = max(1, config.max_children // (2 * d.size))
    top_k, widest = min(config.top_k, per_domain), min(config.width_candidates, per_domain - 1)
    node, index, ok = top_candidates(scores, top_k)
    if widest > 0:
        w_node, w_index, w_ok = top_candidates(width_scores(problem, b), widest)
        node, index, ok = (
            torch.cat([node, w_node], 1),
            torch.cat([index, w_index], 1),
            torch.cat([ok, w_ok], 1),
        )
    k = node.shape[1]
    if k == 1:
        return Choice(node[:, 0], index[:, 0], points(problem, d, node[:, 0], index[:, 0], tables))
    rep = torch.arange(d.size, device=node.device).repeat_interleave(k)
    many: Domains = select(d, rep)
    n_flat, i_flat = node.reshape(-1), index.reshape(-1)
    choice = Choice(n_flat, i_flat, points(problem, many, n_flat, i_flat, tables))
    children = split_neurons(replace(many, bound=torch.full_like(many.bound, torch.inf)), choice)
    children = bound_domains(problem, children, replace(bound, steps=config.steps), relations).domains
    half = d.size * k
    worse = torch.maximum(children.bound[:half], children.bound[half:]).reshape(d.size, k)
    worse = torch.where(ok, worse, torch.full_like(worse, torch.inf))
    best = worse.argmin(1, keepdim=True)  # first minimum: the higher BBPS score among ties
    pick = (torch.arange(d.size, device=node.device) * k + best.squeeze(1)).long()
    return Choice(n_flat[pick], i_flat[pick], choice.point[pick])

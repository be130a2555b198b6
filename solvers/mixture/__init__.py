"""The exact-posterior world: Gaussian-mixture priors with exact scores and exact posteriors.

On natural images nobody knows the posterior, so PSNR against one ground truth cannot say whether a
solver samples it. Here everything is exact: the prior is a mixture of Gaussians whose means are
orbits of a symmetry group (EquiReg's assumption holds exactly), its noise prediction is closed
form at every level (``prior``), a linear operator with Gaussian noise gives a mixture posterior
(``posterior``), and the posterior metrics score a solver's samples against it (``metrics``).

- ``presets``: named worlds (``mog8``, ``mog8-d4``, ``mog16``) as plain parameters;
- ``gmm``: the mixture (low-rank + isotropic covariances), densities and the exact VP score;
- ``world``: a world's tensors from its seed, and its orthogonal manifold-preferential autoencoder;
- ``prior``: ``MixturePrior`` / ``LatentMixturePrior`` / ``LinearAutoencoder`` (the ``Prior`` API);
- ``posterior``: operator matrices and the exact posterior mixture;
- ``data``: splits, samples-per-measurement ids, clusters, operator sizes;
- ``metrics``: sliced Wasserstein, mean error, std ratio, mode TV, coverage, MMSE gap;
- ``loader``: ``load_prior({"kind": "mixture", ...})``.
"""

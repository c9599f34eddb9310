"""How accurate is TRPO's finite-difference Hessian-vector product, and why (issue 15, part 3).

At one set of policy parameters and ONE sampled meta-batch (pre-update and post-update
trajectories, sampled exactly as a training iteration samples them), this compares three
products of the KL's Hessian, the matrix TRPO's conjugate gradient (CG) inverts:

* ``exact``: double backprop (``--hvp=exact``), the reference;
* ``fd1e-8``: rllab's symmetric difference with the documented base_eps 1e-8;
* ``fd1``: the same with base_eps 1.0 (what maml_rl's optimizer passed).

Both FD products perturb theta by eps * v with eps = base_eps / (||theta|| + 1e-8) and v the
*unnormalised* CG vector, so the perturbation's length is base_eps * ||v|| / ||theta||. The
study reports, for every CG iteration of the exact solve, ||v||, that length and each FD
product's relative error; a sweep of the perturbation length at the first and last CG vector
(the classic round-off / truncation trade-off, where the two base_eps values land on it); and
the outcome of a whole TRPO step solved with each product (direction's cosine to the exact
one, the curvature s'Hs each product reports against the exact one, the step's KL on the
post-update batch, the line search, and the KL the step makes on the PRE-update policy, which
TRPO does not constrain).

Usage (results in docs/RL.md, "The finite-difference step"):
    python scripts/fd_hvp_study.py --env_name=point --checkpoint=init --out=/tmp/fd/point_init.json
    python scripts/fd_hvp_study.py --env_name=point --checkpoint=/tmp/fd/point_maml/checkpoints/ckpt-500
    (--env_name: point, cheetah_dir, cheetah_vel, ant_vel, ant_dir; TASKS holds each one's
    released training settings, checked against the rl_<env> presets by the tests)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# training settings of the runs being explained (run.sh / docs/RL.md): fast_lr, meta-batch,
# trajectories per task, horizon, TRPO KL bound
TASKS = {
    "point": dict(fast_lr=0.5, meta_batch_size=20, fast_batch_size=20, horizon=100,
                  step_size=0.01),
    "cheetah_dir": dict(fast_lr=0.1, meta_batch_size=40, fast_batch_size=20, horizon=200,
                        step_size=0.02),
    "cheetah_vel": dict(fast_lr=0.1, meta_batch_size=40, fast_batch_size=10, horizon=200,
                        step_size=0.01),
    # the ant's released MAML configurations (cluster_maml_trpo_ant.py): does FD(1.0) stay
    # accurate on a policy with a 125-dimensional observation? (session 21)
    "ant_vel": dict(fast_lr=0.1, meta_batch_size=40, fast_batch_size=20, horizon=200,
                    step_size=0.01),
    "ant_dir": dict(fast_lr=0.1, meta_batch_size=40, fast_batch_size=40, horizon=200,
                    step_size=0.01),
}
PRODUCTS = {"fd1e-8": 1e-8, "fd1": 1.0}


def relative_error(approx, exact) -> float:
    return float(np.linalg.norm(approx - exact) / max(np.linalg.norm(exact), 1e-300))


def cosine(a, b) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


class Study:
    """One policy, one sampled meta-batch, the three products and TRPO's pieces on them."""

    def __init__(self, learner, train_batches, valid, step_size: float):
        import tensorflow as tf
        self.tf = tf
        self.learner = learner
        self.train_batches = tuple(train_batches)
        self.valid = valid
        self.step_size = step_size
        self.dtype = learner.dtype
        self.theta = learner.policy.get_flat().numpy()
        self.theta_norm = float(np.linalg.norm(self.theta))
        self.damping = learner.config.cg_damping

    def kl_grad(self, params):
        tf = self.tf
        return self.learner._kl_grad_fn(tf.constant(params, self.dtype), self.train_batches,
                                        self.valid).numpy().astype(np.float64)

    def exact(self, vector):
        tf = self.tf
        return self.learner._exact_hvp_fn(
            tf.constant(self.theta, self.dtype), tf.constant(vector, self.dtype),
            self.train_batches, self.valid).numpy().astype(np.float64)

    def fd_with_length(self, vector, length):
        """FD product whose perturbation eps * v has Euclidean length ``length``."""
        eps = length / np.linalg.norm(vector)
        v = np.asarray(vector, dtype=self.theta.dtype)
        plus, minus = self.kl_grad(self.theta + eps * v), self.kl_grad(self.theta - eps * v)
        return (plus - minus) / (2.0 * eps)

    def product(self, name):
        from rl import optimization
        if name == "exact":
            return self.exact
        return optimization.finite_difference_hvp(self.kl_grad, self.theta, PRODUCTS[name])

    def perturbation_length(self, name, vector) -> float:
        return PRODUCTS[name] / (self.theta_norm + 1e-8) * float(np.linalg.norm(vector))

    def unchanged_fraction(self, name, vector) -> float:
        """Share of float32 components with theta + eps v == theta (the step rounds away)."""
        eps = PRODUCTS[name] / (self.theta_norm + 1e-8)
        v = np.asarray(vector, dtype=self.theta.dtype)
        return float(np.mean(self.theta + eps * v == self.theta))

    def loss_and_kl(self, params):
        tf = self.tf
        loss, kl = self.learner._loss_kl_fn(tf.constant(params, self.dtype), self.train_batches,
                                            self.valid)
        return float(loss.numpy()), float(kl.numpy())

    def pre_update_kl(self, params) -> float:
        """Mean KL(pi_theta || pi_params) over the pre-update batch's real steps."""
        from rl.maml_trpo import masked_task_mean  # noqa: F401 (same averaging as the KL)
        from rl.policies import gaussian
        tf = self.tf
        batch = self.train_batches[0]
        policy = self.learner.policy
        old = gaussian(*policy.forward(batch.obs, params=policy.unflatten(
            tf.constant(self.theta, self.dtype))))
        new = gaussian(*policy.forward(batch.obs, params=policy.unflatten(
            tf.constant(params, self.dtype))))
        kl = old.kl_divergence(new)
        return float(tf.reduce_sum(kl * batch.mask) / tf.reduce_sum(batch.mask))

    # ------------------------------------------------------------------ the study
    def along_exact_cg(self, grad, iterations):
        """CG with the exact product; every vector it multiplies is also given to the FD
        products. Returns one row per CG iteration."""
        from rl import optimization
        vectors, products = [], []

        def recording(vector):
            vectors.append(np.array(vector))
            products.append(self.exact(vector))
            return products[-1] + self.damping * vector

        optimization.conjugate_gradient(recording, grad, iterations)
        rows = []
        for i, (vector, exact) in enumerate(zip(vectors, products)):
            row = {"cg_iteration": i, "vector_norm": float(np.linalg.norm(vector))}
            for name in PRODUCTS:
                row[f"{name}_length"] = self.perturbation_length(name, vector)
                row[f"{name}_unchanged"] = self.unchanged_fraction(name, vector)
                row[f"{name}_rel_error"] = relative_error(self.product(name)(vector), exact)
            rows.append(row)
        return rows, vectors

    def length_sweep(self, vector, lengths):
        exact = self.exact(vector)
        return [{"length": float(length),
                 "rel_error": relative_error(self.fd_with_length(vector, length), exact)}
                for length in lengths]

    def trpo_step(self, name, grad, iterations, reference_direction=None):
        """A whole TRPO step solved with product ``name`` (as MAMLTRPO.meta_step)."""
        from rl import optimization
        hvp = optimization.damped(self.product(name), self.damping)
        started = time.time()
        direction = optimization.conjugate_gradient(hvp, grad, iterations)
        shs = float(direction @ hvp(direction))
        shs_exact = float(direction @ (self.exact(direction) + self.damping * direction))
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.sqrt(2.0 * self.step_size / (shs + 1e-8))
        if not np.isfinite(scale):
            scale = 1.0
        full_step = scale * direction
        loss_before, _ = self.loss_and_kl(self.theta)
        loss_full, kl_full = self.loss_and_kl(self.theta - full_step)
        result = optimization.backtracking_line_search(
            self.loss_and_kl, self.theta, full_step, loss_before, self.step_size,
            self.learner.config.backtrack_ratio, self.learner.config.max_backtracks)
        row = {"product": name, "direction_norm": float(np.linalg.norm(direction)),
               "shs": shs, "shs_exact": shs_exact, "full_step_norm": float(
                   np.linalg.norm(full_step)),
               "full_step_kl": kl_full, "full_step_loss_change": loss_full - loss_before,
               "accepted": bool(result.accepted), "backtracks": int(result.backtracks),
               "kl": result.kl, "loss_change": result.loss - loss_before,
               "pre_update_kl": self.pre_update_kl(result.params),
               "seconds": time.time() - started}
        if reference_direction is not None:
            row["cosine_to_exact"] = cosine(direction, reference_direction)
        return row, direction


def sample_batches(env_name, policy, learner, settings, seed, num_workers=0):
    """Pre-update batch, inner step, post-update batch: one training iteration's sampling."""
    from rl.envs.registry import make_env, make_vector_env
    from rl.episodes import compute_advantages
    from rl.adaptation import to_sample_batch
    from rl.samplers import BatchSampler
    k, n = settings["meta_batch_size"], settings["fast_batch_size"]
    env = make_vector_env(env_name, k * n, False, num_workers)
    try:
        sampler = BatchSampler(env, k, n, settings["horizon"])
        tasks = make_env(env_name).sample_tasks(k, np.random.RandomState(seed))
        theta = policy.get_flat()
        adapter = learner.adapter
        pre = compute_advantages(sampler.sample(tasks, adapter.sampling_policy(None), seed),
                                 0.99, 1.0)
        train = [to_sample_batch(pre, learner.dtype)]
        params = adapter.adapted_params(theta, train)
        post = compute_advantages(sampler.sample(tasks, adapter.sampling_policy(params),
                                                 seed + 1), 0.99, 1.0)
    finally:
        env.close()
    return train, learner.make_valid_batch(theta, train, post), pre, post


def run(env_name, checkpoint, seed=1, cg_iters=10, num_workers=0, settings=None,
        hidden_sizes=(100, 100)):
    import tensorflow as tf
    from rl.envs.registry import make_env
    from rl.maml_trpo import MAMLTRPO, TRPOConfig
    from rl.policies import GaussianMLPPolicy
    settings = dict(TASKS[env_name] if settings is None else settings)
    started = time.time()
    probe = make_env(env_name)
    tf.random.set_seed(seed)
    policy = GaussianMLPPolicy(probe.observation_space.shape[0], probe.action_space.shape[0],
                               hidden_sizes, 1.0, seed=seed)
    if checkpoint != "init":
        before = policy.get_flat().numpy()
        tf.train.Checkpoint(policy=policy).read(checkpoint).expect_partial()
        if np.array_equal(before, policy.get_flat().numpy()):
            raise ValueError(f"{checkpoint} did not restore the policy's parameters")
    learner = MAMLTRPO(policy, TRPOConfig(fast_lr=settings["fast_lr"],
                                          step_size=settings["step_size"], cg_iters=cg_iters))
    train, valid, pre, post = sample_batches(env_name, policy, learner, settings, seed,
                                             num_workers)
    study = Study(learner, train, valid, settings["step_size"])
    _, grad = learner._loss_grad_fn(tf.constant(study.theta), study.train_batches, valid)
    grad = grad.numpy().astype(np.float64)
    rows, vectors = study.along_exact_cg(grad, cg_iters)
    lengths = np.logspace(-7, 1, 17)
    sweeps = {"first": study.length_sweep(vectors[0], lengths),
              "last": study.length_sweep(vectors[-1], lengths)}
    steps, directions = [], {}
    for name in ("exact",) + tuple(PRODUCTS):
        row, directions[name] = study.trpo_step(name, grad, cg_iters, directions.get("exact"))
        steps.append(row)
    return {"env_name": env_name, "checkpoint": checkpoint, "seed": seed, "settings": settings,
            "num_params": int(study.theta.size), "theta_norm": study.theta_norm,
            "grad_norm": float(np.linalg.norm(grad)),
            "log_std": policy.log_std.numpy().tolist(),
            "return_pre_update": float(pre.average_return_per_task().mean()),
            "return_post_update": float(post.average_return_per_task().mean()),
            "cg": rows, "length_sweep": sweeps, "trpo_steps": steps,
            "wall_seconds": time.time() - started}


def markdown(result) -> str:
    lines = [f"### {result['env_name']}, {result['checkpoint']}: ||theta|| = "
             f"{result['theta_norm']:.3g}, ||g|| = {result['grad_norm']:.3g}, returns pre/post "
             f"{result['return_pre_update']:.1f}/{result['return_post_update']:.1f}, "
             f"{result['wall_seconds']:.0f} s",
             "", "| CG it. | ||v|| | length 1e-8 | unchanged 1e-8 | error 1e-8 | length 1.0 "
             "| error 1.0 |", "|---|---|---|---|---|---|---|"]
    for r in result["cg"]:
        lines.append(f"| {r['cg_iteration']} | {r['vector_norm']:.3g} | {r['fd1e-8_length']:.2g}"
                     f" | {r['fd1e-8_unchanged']:.2f} | {r['fd1e-8_rel_error']:.3g} | "
                     f"{r['fd1_length']:.2g} | {r['fd1_rel_error']:.3g} |")
    lines += ["", "| perturbation length | error, first CG vector | error, last CG vector |",
              "|---|---|---|"]
    for a, b in zip(result["length_sweep"]["first"], result["length_sweep"]["last"]):
        lines.append(f"| {a['length']:.1e} | {a['rel_error']:.3g} | {b['rel_error']:.3g} |")
    lines += ["", "| product | cos to exact | s'Hs (own) | s'Hs (exact) | KL full step | "
              "accepted, backtracks | KL | loss change | pre-update KL |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in result["trpo_steps"]:
        lines.append(f"| {s['product']} | {s.get('cosine_to_exact', 1.0):.3f} | {s['shs']:.3g} |"
                     f" {s['shs_exact']:.3g} | {s['full_step_kl']:.3g} | {s['accepted']}, "
                     f"{s['backtracks']} | {s['kl']:.3g} | {s['loss_change']:.3g} | "
                     f"{s['pre_update_kl']:.3g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env_name", choices=sorted(TASKS), default="point")
    parser.add_argument("--checkpoint", default="init",
                        help="'init' (seeded initialisation) or a checkpoint prefix "
                             "(e.g. a copy of checkpoints/rl/point_maml/checkpoints/ckpt-500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cg_iters", type=int, default=10)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--out", default="", help="JSON output (a .md table is written beside)")
    args = parser.parse_args(argv)
    if args.checkpoint != "init" and not os.path.exists(args.checkpoint + ".index"):
        parser.error(f"--checkpoint: no checkpoint at {args.checkpoint} ({args.checkpoint}"
                     f".index missing); pass 'init' or a prefix such as .../ckpt-500")
    if args.cg_iters < 1:
        parser.error("--cg_iters must be >= 1")
    result = run(args.env_name, args.checkpoint, args.seed, args.cg_iters, args.num_workers)
    text = markdown(result)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()

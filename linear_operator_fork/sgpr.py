"""What a pull request costs SGPR users: gpytorch's SGPR (``InducingPointKernel``) on two or more linear_operators.

SGPR's covariance is a ``LowRankRootAddedDiagLinearOperator`` with a dense root: the operator whose capacitance
matrix the sparse pull requests change, used by people who never touch a sparse matrix. Each variant runs in its own
process, in rounds that alternate the variants, so that a busy machine slows them all alike. A variant is
``installed`` (the linear_operator of this Python) or a directory put first on ``PYTHONPATH``: a site from
``pip install --target`` or a tree from ``python -m linear_operator_fork tree --through K DIR``. ``nox -s sgpr``
runs stock against prefixes of the series::

    python -m linear_operator_fork.sgpr --variant installed --variant /tmp/p3 --variant /tmp/p4 --rounds 3

It prints one line per run, then a table of the median seconds of a training step (the first step excluded), of a
prediction, and the final loss and mean predictive variance, which agree to about float32 precision between
variants that compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSTALLED = "installed"

# The child process: train gpytorch's SGPR for a few Adam steps, then predict; prints one JSON line
CHILD = r"""
import json, sys, time
import torch, gpytorch, linear_operator

torch.manual_seed(0)
N, M, STEPS, dtype = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), torch.float32
train_x = torch.rand(N, 2, dtype=dtype)
train_y = torch.sin(6 * train_x[:, 0]) * torch.cos(4 * train_x[:, 1]) + 0.1 * torch.randn(N, dtype=dtype)


class SGPR(gpytorch.models.ExactGP):
    def __init__(self, likelihood):
        super().__init__(train_x, train_y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        base = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
        self.covar_module = gpytorch.kernels.InducingPointKernel(
            base, inducing_points=train_x[:M].clone(), likelihood=likelihood
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


likelihood = gpytorch.likelihoods.GaussianLikelihood()
model = SGPR(likelihood).to(dtype)
mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
model.train()
steps = []
for _ in range(STEPS):
    start = time.perf_counter()
    optimizer.zero_grad()
    loss = -mll(model(train_x), train_y)
    loss.backward()
    optimizer.step()
    steps.append(time.perf_counter() - start)
model.eval()
test_x = torch.rand(1000, 2, dtype=dtype)
start = time.perf_counter()
with torch.no_grad():
    variance = likelihood(model(test_x)).variance
predict = time.perf_counter() - start
print(json.dumps({"version": linear_operator.__version__, "file": linear_operator.__file__, "steps": steps,
                  "predict": predict, "loss": float(loss), "variance": float(variance.mean())}))
"""


class SGPRError(Exception):
    """A variant that cannot be run, or a run that failed; the message names it."""


@dataclass(frozen=True)
class Run:
    version: str
    file: str
    steps: list[float]
    predict: float
    loss: float
    variance: float


def check_variant(variant: str) -> None:
    """A variant is ``installed`` or a directory that holds a linear_operator package."""
    if variant == INSTALLED:
        return
    if not (Path(variant) / "linear_operator" / "__init__.py").is_file():
        raise SGPRError(
            f"variant {variant!r}: expected {INSTALLED!r} or a directory that holds linear_operator/__init__.py "
            "(a pip --target site, or a tree from `python -m linear_operator_fork tree`)"
        )


def run(variant: str, size: int, inducing: int, steps: int) -> Run:
    """One run of the SGPR model on ``variant``."""
    env = dict(os.environ)
    if variant != INSTALLED:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(variant).resolve()), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-c", CHILD, str(size), str(inducing), str(steps)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SGPRError(f"the SGPR run on {variant} failed (exit code {done.returncode}):\n{done.stderr[-2000:]}")
    result = Run(**json.loads(done.stdout.strip().splitlines()[-1]))
    if variant != INSTALLED and not Path(result.file).resolve().is_relative_to(Path(variant).resolve()):
        raise SGPRError(f"the run on {variant} imported linear_operator from {result.file}, not from that directory")
    return result


def table(results: dict[str, list[Run]], size: int, inducing: int, steps: int) -> str:
    """The markdown table of the medians over the runs of each variant."""
    rounds = min(len(runs) for runs in results.values())
    lines = [
        f"SGPR, N = {size}, {inducing} inducing points, float32, {steps} Adam steps, medians of {rounds} runs:",
        "",
        "| variant | linear_operator | step (s) | prediction (s) | final loss | mean variance |",
        "|---|---|---|---|---|---|",
    ]
    for variant, runs in results.items():
        # (The first step includes one-off costs: imports, allocations)
        step = statistics.median(seconds for result in runs for seconds in result.steps[1:] or result.steps)
        predict = statistics.median(result.predict for result in runs)
        first = runs[0]
        lines.append(
            f"| {variant} | {first.version} | {step:.3f} | {predict:.3f} | {first.loss:.6f} | {first.variance:.6f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--variant", action="append", required=True, help=f"{INSTALLED}, or a directory put first on PYTHONPATH"
    )
    parser.add_argument("--size", type=int, default=20000, help="training points (default 20000)")
    parser.add_argument("--inducing", type=int, default=500, help="inducing points (default 500)")
    parser.add_argument("--steps", type=int, default=6, help="Adam steps (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, alternating (default 3)")
    args = parser.parse_args(argv)
    for name in ("size", "inducing", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.inducing > args.size:
        parser.error(f"--inducing ({args.inducing}) must be at most --size ({args.size})")
    try:
        for variant in args.variant:
            check_variant(variant)
        results: dict[str, list[Run]] = {variant: [] for variant in args.variant}
        for round_number in range(1, args.rounds + 1):
            for variant in results:
                result = run(variant, args.size, args.inducing, args.steps)
                results[variant].append(result)
                print(
                    f"round {round_number}/{args.rounds}: {variant} (linear_operator {result.version}): step "
                    f"{statistics.median(result.steps):.3f} s, prediction {result.predict:.3f} s, "
                    f"loss {result.loss:.6f}",
                    flush=True,
                )
    except SGPRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print()
    print(table(results, args.size, args.inducing, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``hvdtrain plan``: its flags (``PlanConfig``) and the one call behind it (``run_plan``): one
node's rate, given or measured here, through the cost model (``scaling``) to N nodes and the
recipe's time-to-train (``plan_job``); ``render_plan`` prints it."""

from __future__ import annotations

from dataclasses import dataclass

from hvdtrain.errors import ConfigError
from hvdtrain.flags import REQUIRED, Validated, flag
from hvdtrain.perf.scaling import BYTES_PER_PARAM, OVERLAP, Job, predict
from hvdtrain.training import recipes
from hvdtrain.training.config import ScheduleFlags, make_plan


@dataclass
class PlanConfig(Validated):
    nodes: int = flag(REQUIRED, "--nodes", low=1, help="Nodes.")
    global_batch: int = flag(REQUIRED, "--global-batch", low=1, help="Global batch (seed: 24576).")
    ranks_per_node: int = flag(1, "--ranks-per-node", low=1, help="Ranks per node (seed: 2).")
    link_gbps: float = flag(100.0, "--link-gbps", low=0, open_low=True, help="Each node's link, Gb/s.")
    latency_us: float = flag(5.0, "--latency-us", low=0, help="Latency per ring hop, us.")
    node_images_per_second: float | None = flag(None, "--node-images-per-second", low=0, open_low=True,
                                                help="One node's training images/s (all its ranks).")
    measure: bool = flag(False, "--measure",
                         help="Time this node's training step instead (ResNet-50, 224 px, the "
                              "per-rank batch; takes a minute or more).")
    gradient_compression: str = flag("none", "--gradient-compression", choices=tuple(BYTES_PER_PARAM),
                                     help="none | fp16 (half the gradient bytes).")
    overlap: float = flag(OVERLAP, "--overlap", low=0, high=1,
                          help="Share of compute that hides the allreduce (0..1; default: measured, "
                               "bench/NOTES.md).")
    recipe: str = flag("surfsara", "--recipe", choices=recipes.NAMES, aliases=recipes.ALIASES,
                       help="surfsara (the seed's; `seed` is accepted) | mlperf: whose plan to time.")

    def check(self) -> None:
        if (self.node_images_per_second is None) == (not self.measure):
            raise ConfigError("give --node-images-per-second R or --measure (one of them)")
        if self.global_batch % (self.nodes * self.ranks_per_node):
            raise ConfigError(f"--global-batch {self.global_batch} must divide over --nodes {self.nodes} "
                              f"x --ranks-per-node {self.ranks_per_node} ranks")


def run_plan(cfg: PlanConfig, log=print) -> dict:
    """The plan as one dict (``render_plan`` prints it)."""
    cfg.check()
    rate = cfg.node_images_per_second
    if cfg.measure:
        from hvdtrain.perf.bench import BenchConfig, run_bench

        per_rank = cfg.global_batch // (cfg.nodes * cfg.ranks_per_node)
        rate = run_bench(BenchConfig(batch_size=per_rank, steps=2, windows=2, warmup=1,
                                     peak=False))["images_per_second"]
        log(f"measured: this node trains ResNet-50 at {rate:.2f} images/s (batch {per_rank}, 1 rank)")
    try:
        return plan_job(Job(cfg.nodes, cfg.ranks_per_node, cfg.global_batch, rate, cfg.link_gbps,
                            cfg.latency_us, compression=cfg.gradient_compression, overlap=cfg.overlap),
                        cfg.recipe)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def plan_job(job, recipe: str = "surfsara", images: int = recipes.IMAGENET_TRAIN_IMAGES) -> dict:
    """``hvdtrain plan``: the predicted step and rate of ``job`` (a ``scaling.Job``), and the time
    to train the recipe's plan at that rate."""
    pred = predict(job)
    plan = make_plan(ScheduleFlags(train_batch_size=job.global_batch, recipe=recipe), images, job.ranks)
    out = {"job": {**job.__dict__, "ranks": job.ranks, "per_rank_batch": job.per_rank_batch,
                   "gradient_bytes": job.gradient_bytes},
           "prediction": pred.as_dict(), "plan": plan.as_dict(),
           "time_to_train_seconds": plan.train_steps * pred.step_seconds}
    if plan.expected_epochs:
        out["time_to_target_seconds"] = plan.expected_epochs * images / pred.images_per_second
    return out


def render_plan(r: dict) -> str:
    j, p, plan = r["job"], r["prediction"], r["plan"]
    ms = 1e3
    lines = [
        f"job: {j['nodes']} node(s) x {j['ranks_per_node']} rank(s) = {j['ranks']} ranks, global batch "
        f"{j['global_batch']:,} ({j['per_rank_batch']:g}/rank); one node {j['node_images_per_second']:g} "
        f"images/s; link {j['link_gbps']:g} Gb/s, {j['latency_us']:g} us/hop; gradients "
        f"{j['gradient_bytes'] / 1e6:.1f} MB ({j['compression']}), fusion {j['fusion_mb']:g} MB, "
        f"overlap {j['overlap']:g}",
        f"step {p['step_seconds'] * ms:,.1f} ms = compute {p['compute_seconds'] * ms:,.1f} + exposed "
        f"allreduce {p['exposed_allreduce_seconds'] * ms:,.1f} (of {p['allreduce_seconds'] * ms:,.1f}) "
        f"+ exposed input {p['exposed_input_seconds'] * ms:,.1f}; {p['bytes_per_node_link'] / 1e6:,.1f} MB "
        f"per node link per step",
        f"global {p['images_per_second']:,.1f} images/s, scaling efficiency {p['scaling_efficiency']:.1%}",
        f"recipe {plan['recipe']}: {plan['steps_per_epoch']:.1f} steps/epoch, "
        f"warm-up {plan['warmup_steps']:,}, {plan['train_steps']:,} steps ({plan['epochs']:.1f} epochs), "
        f"LR {plan['base_lr']:g} -> "
        f"{plan['peak_lr']:.4g} -> {plan['end_lr']:g} ({plan['lr_schedule']}, {plan['optimizer']})",
        f"time-to-train: {_hours(r['time_to_train_seconds'])} for the {plan['epochs']:.1f} epochs",
    ]
    if "time_to_target_seconds" in r:
        lines.append(f"time-to-target: {_hours(r['time_to_target_seconds'])} at the RCP mean of "
                     f"{plan['expected_epochs']:.1f} epochs to {recipes.MLPERF_TARGET:.1%}")
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds:,.0f} s)"

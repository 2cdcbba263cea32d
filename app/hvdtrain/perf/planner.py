"""``hvdtrain plan``: its flags (``PlanConfig``) and the one call behind it (``run_plan``): one
node's rate, given or measured here, through the cost model (``scaling``) to N nodes and the
recipe's time-to-train (``plan_job``); ``render_plan`` prints it."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from hvdtrain.errors import ConfigError
from hvdtrain.flags import REQUIRED, Validated, flag
from hvdtrain.perf import spread
from hvdtrain.perf.scaling import BYTES_PER_PARAM, LEVERS, OVERLAP, Job, predict
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
                              "per-rank batch, 10 steps: its rate and step-time spread; minutes).")
    gradient_compression: str = flag("none", "--gradient-compression", choices=tuple(BYTES_PER_PARAM),
                                     help="none | fp16 (half the gradient bytes).")
    overlap: float = flag(OVERLAP, "--overlap", low=0, high=1,
                          help="Share of compute that hides the allreduce (0..1; default: measured, "
                               "bench/NOTES.md).")
    recipe: str = flag("surfsara", "--recipe", choices=recipes.NAMES, aliases=recipes.ALIASES,
                       help="surfsara (the seed's; `seed` is accepted) | mlperf: whose plan to time.")
    from_bench: Path | None = flag(None, "--from-bench",
                                   help="The JSON of `hvdtrain bench --nodes` (or `hvdtrain bench "
                                        "--json`): the node rate, the step-time spread and the "
                                        "slowest node, measured.")
    step_cv: float | None = flag(None, "--step-cv", low=0, high=1,
                                 help="A stated per-step time spread (coefficient of variation, "
                                      "0..1), instead of a measured one. Default: measured "
                                      "(--measure, --from-bench), else 0 (said so in the plan).")
    node_spread: float | None = flag(None, "--node-spread", low=0, high=1, open_high=True,
                                     help="The slowest node's deficit against the median node "
                                          "(0.05: 5% fewer images/s). Default: from --from-bench, "
                                          "else 0 (said so in the plan).")
    fs_gbps: float | None = flag(None, "--fs-gbps", low=0, open_low=True,
                                 help="A shared file system every node reads its shards from, Gb/s: "
                                      "printed as needed vs available, and a cap.")

    def check(self) -> None:
        sources = (self.node_images_per_second is not None) + self.measure + (self.from_bench is not None)
        if sources == 0:
            raise ConfigError("give --node-images-per-second R, --measure or --from-bench FILE")
        if self.measure and self.from_bench is not None:
            raise ConfigError("--measure and --from-bench are alternatives")
        if self.global_batch % (self.nodes * self.ranks_per_node):
            raise ConfigError(f"--global-batch {self.global_batch} must divide over --nodes {self.nodes} "
                              f"x --ranks-per-node {self.ranks_per_node} ranks")


def run_plan(cfg: PlanConfig, log=print) -> dict:
    """The plan as one dict (``render_plan`` prints it)."""
    cfg.check()
    rate, measured = cfg.node_images_per_second, {}
    if cfg.measure:
        from hvdtrain.perf.bench import BenchConfig, run_bench

        per_rank = cfg.global_batch // (cfg.nodes * cfg.ranks_per_node)
        res = run_bench(BenchConfig(batch_size=per_rank, steps=5, windows=2, warmup=1, peak=False))
        rate = rate or res["images_per_second"]
        measured = {"samples": spread.relative(res["step_seconds"]), "source": "measured here (--measure)"}
        log(f"measured: this node trains ResNet-50 at {res['images_per_second']:.2f} images/s "
            f"(batch {per_rank}, 1 rank); step spread {res['step_spread']}")
    elif cfg.from_bench is not None:
        measured = read_bench(cfg.from_bench)
        rate = rate or measured["node_images_per_second"]
    job = Job(cfg.nodes, cfg.ranks_per_node, cfg.global_batch, rate, cfg.link_gbps, cfg.latency_us,
              compression=cfg.gradient_compression, overlap=cfg.overlap, fs_gbps=cfg.fs_gbps)
    job, assumed = with_spread(job, cfg, measured)
    try:
        out = plan_job(job, cfg.recipe)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out["assumed"] = assumed
    out["uncertainty"] = uncertainty(job, cfg, out["prediction"])
    return out


def with_spread(job: Job, cfg: PlanConfig, measured: dict) -> tuple[Job, list[str]]:
    """The job with its step-time spread and slowest node, and what the plan assumed about them."""
    assumed = []
    if cfg.step_cv is not None:
        job = replace(job, step_samples=spread.normal_samples(cfg.step_cv))
        assumed.append(f"step spread: CV {cfg.step_cv:g} as stated (--step-cv), normal")
    elif measured.get("samples"):
        job = replace(job, step_samples=tuple(measured["samples"]))
        s = measured["samples"]
        assumed.append(f"step spread: CV {spread.summarize(list(s))['cv']:.3f} over {len(s)} steps, "
                       f"{measured['source']}")
    else:
        assumed.append("step spread: none (0, no stragglers): an assumption; measure it with --measure "
                       "or `hvdtrain bench --nodes`, or state it with --step-cv")
    if cfg.node_spread is not None:
        job = replace(job, node_spread=cfg.node_spread)
        assumed.append(f"slowest node: {cfg.node_spread:.1%} below the median, as stated (--node-spread)")
    elif "node_spread" in measured:
        job = replace(job, node_spread=measured["node_spread"],
                      slow_node_samples=tuple(measured.get("slow_node_samples") or ()) or None)
        assumed.append(f"slowest node: {measured['slowest_host']}, {measured['node_spread']:.1%} below "
                       f"the median, {measured['source']}")
    else:
        assumed.append("slowest node: as fast as the median (0): an assumption; `hvdtrain bench --nodes` "
                       "measures it, --node-spread states it")
    return job, assumed


def uncertainty(job, cfg: PlanConfig, pred: dict) -> dict | None:
    """The efficiency band a measured spread allows. Resampling the measured steps caps the
    slowest of many ranks at the largest step seen; a normal tail keeps growing with the rank
    count. Its CV is itself an estimate from n steps (standard error about CV / sqrt(2(n - 1)));
    the band spans the resampled reading and normal tails at the CV's 90% interval."""
    if cfg.step_cv is not None or len(job.step_samples) < 2 or job.nodes == 1:
        return None
    n = len(job.step_samples)
    cv = spread.summarize(list(job.step_samples))["cv"]
    margin = 1.645 / (2 * (n - 1)) ** 0.5
    cvs = (cv * max(0.0, 1 - margin), cv * (1 + margin))
    effs = [pred["scaling_efficiency"]] + [
        predict(replace(job, step_samples=spread.normal_samples(c))).scaling_efficiency for c in cvs]
    return {"low": min(effs), "high": max(effs), "cv": cv, "cv_interval": cvs, "samples": n}


def read_bench(path: Path) -> dict:
    """What a plan takes from `hvdtrain bench --nodes` (or a plain `bench --json`) output."""
    try:
        text = Path(path).read_text().strip()
        try:
            data = json.loads(text)  # the health check's file
        except ValueError:
            data = json.loads(text.splitlines()[-1])  # the last line of `bench --json`'s output
    except (OSError, ValueError, IndexError) as exc:
        raise ConfigError(f"--from-bench {path}: not a bench JSON ({exc})") from None
    if "hosts" in data:  # the health check
        return {"node_images_per_second": data["median_node_images_per_second"],
                "samples": spread.relative(data["step_seconds"]), "node_spread": data["node_spread"],
                "slowest_host": data["slowest_host"], "slow_node_samples": data.get("slow_node_samples"),
                "source": f"from {path}"}
    if "step_seconds" not in data:
        raise ConfigError(f"--from-bench {path}: no step_seconds (made by an older hvdtrain bench?)")
    return {"node_images_per_second": data["images_per_second"] / max(1, data.get("num_ranks", 1)),
            "samples": spread.relative(data["step_seconds"]), "source": f"from {path}"}


def plan_job(job, recipe: str = "surfsara", images: int = recipes.IMAGENET_TRAIN_IMAGES) -> dict:
    """``hvdtrain plan``: the predicted step and rate of ``job`` (a ``scaling.Job``), and the time
    to train the recipe's plan at that rate."""
    pred = predict(job)
    plan = make_plan(ScheduleFlags(train_batch_size=job.global_batch, recipe=recipe), images, job.ranks)
    described = {k: v for k, v in job.__dict__.items() if k not in ("step_samples", "slow_node_samples")}
    out = {"job": {**described, "ranks": job.ranks, "per_rank_batch": job.per_rank_batch,
                   "gradient_bytes": job.gradient_bytes, "step_samples": len(job.step_samples)},
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
        f"      + stragglers {p['straggler_seconds'] * ms:,.1f} + coordination "
        f"{p['coordination_seconds'] * ms:,.1f} + host {p['host_seconds'] * ms:,.1f}"
        + (f" + shared file system {p['fs_limited_seconds'] * ms:,.1f}" if p["fs_limited_seconds"] else ""),
        f"input: {p['fs_needed_gbps']:,.2f} Gb/s of images needed"
        + (f", {j['fs_gbps']:g} available (--fs-gbps)" if j.get("fs_gbps") else
           " from the file system (--fs-gbps to check it)"),
        f"global {p['images_per_second']:,.1f} images/s, scaling efficiency {p['scaling_efficiency']:.1%}",
        _largest_loss(p),
        f"recipe {plan['recipe']}: {plan['steps_per_epoch']:.1f} steps/epoch, "
        f"warm-up {plan['warmup_steps']:,}, {plan['train_steps']:,} steps ({plan['epochs']:.1f} epochs), "
        f"LR {plan['base_lr']:g} -> "
        f"{plan['peak_lr']:.4g} -> {plan['end_lr']:g} ({plan['lr_schedule']}, {plan['optimizer']})",
        f"time-to-train: {_hours(r['time_to_train_seconds'])} for the {plan['epochs']:.1f} epochs",
    ]
    lines += [f"assumed: {a}" for a in r.get("assumed", [])]
    if r.get("uncertainty"):
        u = r["uncertainty"]
        lines.append(f"uncertainty: scaling efficiency {u['low']:.1%} to {u['high']:.1%}: the "
                     f"{u['samples']} measured steps resampled, and normal tails at CV "
                     f"{u['cv_interval'][0]:.3f}-{u['cv_interval'][1]:.3f} (the 90% interval of their "
                     f"CV {u['cv']:.3f}); the model is checked within 10% on 2 simulated nodes only "
                     "(bench/NOTES.md)")
    if "time_to_target_seconds" in r:
        lines.append(f"time-to-target: {_hours(r['time_to_target_seconds'])} at the RCP mean of "
                     f"{plan['expected_epochs']:.1f} epochs to {recipes.MLPERF_TARGET:.1%}")
    return "\n".join(lines)


def _largest_loss(p: dict) -> str:
    if not p["losses"]:
        return "largest loss: none (one node, or no term costs anything)"
    name, share = max(p["losses"].items(), key=lambda kv: kv[1])
    return f"largest loss: {name} cost {share:.1%} of the step: {LEVERS[name]}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds:,.0f} s)"

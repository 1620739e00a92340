"""The model: the --model file as llama.cpp will read it, and the speed to expect.

``model.speed`` quotes the one speed model (plan/speed.py): the time a token takes to
read its weights from RAM and VRAM, a fixed cost and the CPU<->GPU hand-overs, with
constants fitted to public measured runs (bench/speed_calibration.tsv); the range is
the fit's cross-validated error.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.speed import DISK_BOUND, tok, what_if
from q3cn_doctor.plan.speed import speed as speed_estimate
from q3cn_doctor.units import gib

RATED_GAIN = 1.05  # the rated-speed figure is quoted when it is at least 5% faster


def _shape(model) -> str:
    layers = f"{model.layers} layers"
    kinds = []
    if model.full_attention_layers != model.layers:
        kinds.append(f"{model.full_attention_layers} full attention")
    if model.sliding_window_layers:
        kinds.append(f"{model.sliding_window_layers} sliding window "
                     f"({model.sliding_window_tokens} tokens)")
    if model.recurrent_layers:
        kinds.append(f"{model.recurrent_layers} recurrent")
    if kinds:
        layers += " (" + ", ".join(kinds) + ")"
    experts = (f"; {model.experts} experts, {model.experts_used} active"
               + (f" + {model.shared_experts} shared" if model.shared_experts else "")
               if model.experts else "; dense")
    return f"{model.architecture}, {layers}{experts}"


@check("model.file", "The --model file reads as a GGUF llama.cpp can plan for")
def model_file(ctx: Context):
    model = ctx.facts.model
    if not ctx.options.model:
        return ctx.finding(
            SKIP, f"No --model given: the {model.name} profile stands in",
            observed=f"profile {model.profile} ({model.source})",
            recommended="Give --model PATH (or model = \"PATH\" in the config file) to plan "
                        "for the file itself.")
    if model.error:
        return ctx.finding(
            FAIL, "The model file cannot be read", observed=model.error,
            recommended="Check the path (for a split model, every *-0000N-of-0000M.gguf part must "
                        "sit beside the first) and that the file is a complete GGUF download.",
            impact="llama-server would stop at load; the checks judged the profile instead.")
    files = len(model.files)
    observed = (f"{model.name}: {_shape(model)}; {gib(model.file_bytes)}"
                + (f" in {files} split files" if files > 1 else "")
                + (f", {model.file_type}" if model.file_type else "")
                + (f"; trained context {model.context_length}" if model.context_length else "")
                + f"; KV cache {gib(model.kv_cache_bytes)} at ctx {model.ctx_size} "
                  f"({model.cache_type})")
    if model.context_length and model.ctx_size > model.context_length:
        return ctx.finding(
            WARN,
            f"--ctx-size {model.ctx_size} is beyond the model's trained context "
            f"({model.context_length})",
            observed=observed,
            recommended=f"Use --ctx-size {model.context_length} or less, unless the model card "
                        "documents RoPE scaling for more.",
            impact="Past its trained context a model's answers degrade, and the larger KV cache "
                   "takes VRAM that expert layers could use.")
    return ctx.finding(PASS, f"{model.name} ({model.architecture}) reads as a GGUF",
                       observed=observed)


@check("model.speed", "Expected generation speed on this machine (the speed model)")
def speed(ctx: Context):
    model = ctx.facts.model
    plan = placement(ctx.facts)
    estimate = speed_estimate(ctx.facts)
    where = (
        f"{plan.gpus} GPU(s) hold the non-expert weights, {gib(plan.kv_cache_bytes)} of KV "
        f"cache and {plan.expert_layers_on_gpu} of {model.expert_layers or model.layers} "
        f"layers' experts (--n-cpu-moe {plan.n_cpu_moe}); {gib(plan.ram_bytes)} stays in RAM"
        if plan.gpus else f"everything in RAM ({gib(plan.ram_bytes)})")
    if not plan.dense_fits_gpu and plan.gpus:
        where += f"; only {plan.gpu_layers} of {model.layers} layers' attention fit the GPU"
    observed = f"{where}. {estimate.basis}"
    if estimate.tok_s_at_ctx and estimate.tok_s and estimate.ctx_size:
        observed += (f". At a full context ({estimate.ctx_size} tokens) about "
                     f"{estimate.tok_s_at_ctx:.0f} tok/s")
    if estimate.tok_s is None and estimate.mode == DISK_BOUND:
        return ctx.finding(
            WARN, f"Generation with {model.name} pages from disk: far below "
                  + (f"~{estimate.high:.0f} tok/s" if estimate.high else "RAM speed"),
            observed=observed,
            recommended="See memory.fit: a smaller quant, more RAM, or more of the model on "
                        "the GPU.",
            manual=["Pick a smaller quant of the model, add RAM, or put more of it on the GPU, "
                    "so its weights fit in RAM and VRAM."],
            action="more RAM or a smaller model", what_if={"swap_bound": False},
            impact="Every token reads the weights that do not fit in RAM from storage.")
    if estimate.tok_s is None:
        return ctx.finding(
            SKIP, "Expected speed unknown: RAM bandwidth unknown", observed=observed,
            recommended="Run `sudo q3cn-doctor check` (dmidecode lists the RAM's speed and "
                        "channels) or `q3cn-doctor check --measure`.")
    title = f"Expected {estimate.text()} generating with {model.name}"
    memory = ctx.facts.get("memory")
    configured, rated = (getattr(memory, "configured_mts", None),
                         getattr(memory, "rated_mts", None))
    if configured and rated and rated > configured:
        faster = what_if(ctx.facts, ram_mts=rated).tok_s
        if faster and faster >= estimate.tok_s * RATED_GAIN:
            title += f"; ~{tok(faster)} with RAM at its rated speed"
    if estimate.mode != "gpu":
        title += f" ({estimate.mode})"
    if plan.gpus and not plan.dense_fits_gpu and estimate.mode == "gpu":
        step = (f"Lower --ctx-size, or quantise the KV cache (-- -ctk q8_0 -ctv q8_0) so every "
                f"layer's attention and its {gib(plan.kv_cache_bytes)} KV cache fit the GPU.")
        return ctx.finding(
            WARN, title + " (attention layers left on the CPU)", observed=observed,
            recommended=step, manual=[step], action="a smaller --ctx-size",
            impact="Layers whose attention runs on the CPU read their weights and KV cache from "
                   "RAM for every token.")
    return ctx.finding(INFO, title, observed=observed, impact=_dominant(estimate))


def _dominant(estimate) -> str:
    """Which term sets the pace, from the estimate's own breakdown."""
    names = {"ram": "reading the RAM part", "vram": "reading the VRAM part",
             "fixed": "the fixed per-token cost", "transitions": "CPU<->GPU hand-overs",
             "disk": "reading from disk"}
    total = sum(estimate.ms.values()) or 1
    key = max(estimate.ms, key=estimate.ms.get)
    return (f"Generation reads every active weight once per token; {names[key]} takes the "
            f"largest share of its time ({estimate.ms[key] / total:.0%}).")

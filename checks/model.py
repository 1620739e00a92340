"""The model: the --model file as llama.cpp will read it, and the speed to expect.

``model.speed`` is a roofline: the bytes one generated token reads from RAM and from
VRAM (plan.placement) over each side's bandwidth, at shares of peak fitted to
the guide's figures (about 40 tok/s for Qwen3-Coder-Next, 30 for gpt-oss-120b on an
i5-12600K, RTX 4070 12 GB and dual-channel DDR5-6000).
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import placement
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


@check("model.speed", "Expected generation speed on this machine (a calibrated roofline)")
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
    if estimate.tok_s is None:
        return ctx.finding(
            SKIP, "Expected speed unknown: RAM bandwidth unknown", observed=observed,
            recommended="Run `sudo q3cn-doctor check` (dmidecode lists the RAM's speed and "
                        "channels) or `q3cn-doctor check --measure`.")
    title = f"Expected ~{estimate.tok_s:.0f} tok/s generating with {model.name}"
    rated = estimate.tok_s_rated
    if rated and rated >= estimate.tok_s * RATED_GAIN:
        title += f"; ~{rated:.0f} with RAM at its rated speed"
    if plan.gpus and not plan.dense_fits_gpu:
        step = (f"Lower --ctx-size, or quantise the KV cache (-- -ctk q8_0 -ctv q8_0) so every "
                f"layer's attention and its {gib(plan.kv_cache_bytes)} KV cache fit the GPU.")
        return ctx.finding(
            WARN, title + " (attention layers left on the CPU)", observed=observed,
            recommended=step, manual=[step], action="a smaller --ctx-size",
            impact="Layers whose attention runs on the CPU read their weights and KV cache from "
                   "RAM for every token.")
    return ctx.finding(
        INFO, title, observed=observed,
        impact="Generation reads every active weight once per token: the RAM part over RAM "
               "bandwidth sets most of the pace.")

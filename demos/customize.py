"""Customisation by class: pick classes (smiling, older, glasses ...) and a method; faces to the shelf.

Works on every generator: the classes are those of the model's labeller (its pack's, else the photo
labeller's) and follow the active model; methods the pack cannot serve fall back, and the tab and the
API's note say which path ran (:func:`facegen.features.customize.customize`)."""

from __future__ import annotations

import gradio as gr

from facegen import studio
from facegen.engine.errors import FacegenError, InputError
from facegen.features import customize as cz

from .common import SHORT_EVENT, Ctx, gpu, last_result_to_shelf, load_model, out_dir, save_png, ui_errors

TAB = "customize"
TITLE = "Customise by class"
METHOD_CHOICES = [("Auto (the pack's measured best method and check for the class)", "auto"),
                  ("Z-code generator (pack: one per class)", "zcode"),
                  ("Class sampler (pack: around known members)", "sampler"),
                  ("Rejection sampling (sample, judge, keep)", "rejection"),
                  ("Fine-tuned generator (where the pack names one)", "finetuned")]
CHECK_CHOICES = [("Check every face", "check"),
                 (f"Check, and keep the most varied of {cz.VARIETY}× as many", "varied"),
                 ("No check (fastest: z-code, sampler and fine-tuned faces as they come)", "none")]
HELP = ("Several classes mean **all of them**. The classes are those of the model's labeller: the face world's "
        "for `mini-v2` and `mini`, the photo labeller's (smiling, older, looking left …) for generators without a pack. "
        "*Auto* draws each class the way its pack measured best for this generator (method and check: the "
        "*Check* choice below is then the recipe's; the note names it; without measured recipes it is the "
        "z-code generator with your check). The *z-code generator* of the rarest chosen class proposes codes; "
        "the *class sampler* resamples around faces its labeller found of the class; *rejection sampling* draws random faces; a *fine-tuned* "
        "generator (e.g. `mini-glasses`) samples directly. A method the model's pack lacks falls back (the note "
        "says so). By default every face is **checked** — by the pack's classifier, else by the labeller — and "
        "only faces of all chosen classes are shown; *most varied* checks four times as many and keeps the most "
        "different ones.")


def available() -> bool:
    return True            # every generator: rejection sampling judged by a labeller is always there


def describe(G, pack) -> str:
    """One line for the tab: what this model's pack offers, whose classes, who checks, what falls back."""
    rules = cz.rules_for(pack)
    have = cz.available_methods(pack)
    offers = (["z-code generators, class classifier"] if "zcode" in have else []) + \
             (["class sampler"] if "sampler" in have else []) + \
             (["fine-tuned: " + ", ".join(pack.get("finetuned"))] if "finetuned" in have else []) + \
             (["measured recipes (auto)"] if pack is not None and pack.has("recipes") else [])
    where = "no pack" if pack is None else f"pack '{pack.name}' ({'; '.join(offers) or 'no class components'})"
    judge = "its classifier" if pack is not None and pack.has("classifier") else f"the {rules.labeller} labeller"
    fallback = "" if "zcode" in have else \
        f" *Z-code generator* falls back to {'the class sampler' if 'sampler' in have else 'rejection sampling'}."
    return f"**This model:** {where}; classes of the {rules.labeller} labeller; faces checked by {judge}.{fallback}"


def model_info(model: str) -> tuple:
    """-> (G, pack, rules) of a model name (loaded and cached by the studio)."""
    G = studio.models().get(model)
    pack = studio.models().pack(G)
    return G, pack, cz.rules_for(pack)


@gpu(duration=60)
def _customize_gpu(model, classes, method, n, psi, seed, check="check"):
    G = studio.device_for(studio.models().get(model))
    pack = studio.models().pack(G)
    kw, source = {}, model
    if method == "finetuned":
        source, cls = cz.finetuned_for(pack, cz.rules_for(pack).parse(classes), model)
        kw = {"G_finetuned": studio.device_for(studio.models().get(source)), "finetuned_class": cls}
    out = cz.customize(G, pack, classes, method, n, psi, seed, check=check, **kw)
    out["model"] = source          # the generator whose ws these are (for the shelf)
    return out


@ui_errors
def customize(classes, method, count, psi, seed, check, model, progress=gr.Progress()):
    """Faces of all `classes` by `method` ('auto', 'zcode', 'sampler', 'rejection', 'finetuned'), `check`
    ('check', 'varied', 'none'; with 'auto' the pack's recipe decides) -> (gallery, note, last result). The
    note names the path that ran."""
    load_model(model, progress)
    _, pack, rules = model_info(model)
    names = rules.parse(classes)
    if method == "finetuned":
        cz.finetuned_for(pack, names, model)          # a clear message before any work
    progress(0.3, desc=f"Generating {int(count)} faces: {' + '.join(names)}")
    out = _customize_gpu(model, names, method, int(count), float(psi), int(seed), check)
    if out["kept"] == 0:
        if out["read"] == 0:
            raise InputError(f"No face found: {out['note']}.")
        raise InputError(f"No face of {' + '.join(names)} was found ({out['note']}); try another combination.")
    d = out_dir()
    label = "+".join(names)
    gallery = [(save_png(img, d / f"{i:03d}.png"), f"{label} {i + 1}") for i, img in enumerate(out["images"])]
    ms = out["seconds"] / out["kept"] * 1000
    note = f"{out['note']}; {ms:.0f} ms per face."
    last = {"model": out["model"], "images": out["images"], "ws": out["ws"], "label": label}
    return gallery, note, last


@ui_errors
def customize_info(model: str) -> str:
    """What /customize does on `model`: its pack's class components, whose classes, who checks, what falls back."""
    G, pack, _ = model_info(model)
    return describe(G, pack)


@ui_errors
def to_shelf(last, shelf):
    """Put every face of the last result on the shelf."""
    return last_result_to_shelf(last, shelf, "Make some faces first.")


def _initial(default: str) -> tuple:
    """Class choices and the info line for the app's default model (the photo labeller's if it fails to load)."""
    try:
        G, pack, rules = model_info(default)
        return rules.names(), describe(G, pack)
    except FacegenError as e:
        return cz.rules_for(None).names(), f"**This model:** cannot be loaded ({e})."


def build(ctx: Ctx):
    names, info = _initial(studio.models().default())
    with gr.Tab(TITLE, id=TAB):
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                classes = gr.CheckboxGroup(names, value=names[:1], label="Classes (all must hold)",
                                           elem_id="cz-classes")
                method = gr.Radio(METHOD_CHOICES, value="auto", label="Method", elem_id="cz-method")
                count = gr.Slider(1, cz.MAX_FACES, value=8, step=1, label="Count")
                psi = gr.Slider(0, 1.2, value=0.7, step=0.05, label="Truncation ψ")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                check = gr.Radio(CHECK_CHOICES, value="check", label="Check", elem_id="cz-check")
                run = gr.Button("Generate", variant="primary", elem_id="cz-run")
                where = gr.Markdown(info, elem_id="cz-path")
                gr.Markdown(HELP)
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Faces", format="png", columns=4, object_fit="contain", height="auto",
                                     elem_id="cz-gallery")
                note = gr.Markdown(elem_id="cz-note")
                shelf_btn = gr.Button("Send all to shelf", size="sm", elem_id="cz-shelf")
        last = gr.State(None)
        gr.api(customize_info, api_name="customize_info")      # API only (inside the tab: Tabs hold tabs only)
    run.click(customize, [classes, method, count, psi, seed, check, ctx.model], [gallery, note, last],
              api_name="customize", **SHORT_EVENT)
    shelf_btn.click(to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="customize_to_shelf")

    def on_model(G) -> dict:
        pack = studio.models().pack(G)
        choices = cz.rules_for(pack).names()
        return {classes: gr.CheckboxGroup(choices=choices, value=choices[:1]), where: describe(G, pack)}

    ctx.on_model(on_model, [classes, where])

"""Customisation by class: pick classes (smiling, old, glasses, red hair ...) and a method; faces to the shelf."""

from __future__ import annotations

import gradio as gr

from facegen.features import customize as cz
from facegen import studio
from facegen.engine import registry
from facegen.engine.errors import InputError

from .common import GPU_EVENT, Ctx, gpu, last_result_to_shelf, load_model, out_dir, save_png, ui_errors

TAB = "customize"
TITLE = "Customise by class"
METHOD_CHOICES = [("Z-code generator (trained per class)", "zcode"),
                  ("Rejection sampling (sample, classify, keep)", "rejection"),
                  ("Fine-tuned generator (where one exists)", "finetuned")]
CHECK_CHOICES = [("Check every face with the classifier", "check"),
                 (f"Check, and keep the most varied of {cz.VARIETY}× as many", "varied"),
                 ("No check (fastest: z-code and fine-tuned faces as they come)", "none")]
if registry.has(cz.conditional_name(registry.default_name())):   # offered only where one is shipped
    METHOD_CHOICES.append(("Conditional generator (class code)", "conditional"))
HELP = ("Several classes mean **all of them**. The z-code generator of the rarest chosen class proposes codes; "
        "rejection sampling draws random faces; a fine-tuned generator (trained on one class's faces, e.g. "
        "`mini-glasses`) samples directly. By default a classifier **checks** every face and only faces it "
        "accepts for all chosen classes are shown; *most varied* checks four times as many and keeps the "
        "most different ones (a little less precise). Z-code generators and fine-tuned generators exist for "
        "`mini`; other models use rejection sampling.")


def available() -> bool:
    return (cz.CLASSIFIER_DIR / "config.json").exists()


@gpu(duration=60)
def _customize_gpu(model, classes, method, n, psi, seed, check="check"):
    G = studio.device_for(studio.models().get(model))
    kw, source = {}, model
    if method == "finetuned":
        source, cls = cz.finetuned_for(model, cz.parse_classes(classes))
        kw = {"G_finetuned": studio.device_for(studio.models().get(source)), "finetuned_class": cls}
    elif method == "conditional" and registry.has(cz.conditional_name(model)):
        source = cz.conditional_name(model)
        kw = {"G_conditional": studio.device_for(studio.models().get(source))}
    out = cz.customize(G, classes, method, n, psi, seed, check=check, **kw)
    out["model"] = source          # the generator whose ws these are (for the shelf)
    return out


@ui_errors
def customize(classes, method, count, psi, seed, check, model, progress=gr.Progress()):
    """Faces of all `classes` by `method` ('zcode', 'rejection', 'finetuned', 'conditional'), `check`
    ('check', 'varied', 'none') -> (gallery, note, last result)."""
    names = cz.parse_classes(classes)
    if method == "finetuned":
        cz.finetuned_for(model, names)          # a clear message before any work
    load_model(model, progress)
    progress(0.3, desc=f"Generating {int(count)} faces: {' + '.join(names)}")
    out = _customize_gpu(model, names, method, int(count), float(psi), int(seed), check)
    if out["kept"] == 0:
        raise InputError(f"No face of {' + '.join(names)} was found ({out['note']}); try another combination.")
    d = out_dir()
    label = "+".join(names)
    gallery = [(save_png(img, d / f"{i:03d}.png"), f"{label} {i + 1}") for i, img in enumerate(out["images"])]
    ms = out["seconds"] / out["kept"] * 1000
    note = f"{out['note']}; {ms:.0f} ms per face."
    last = {"model": out["model"], "images": out["images"], "ws": out["ws"], "label": label}
    return gallery, note, last


@ui_errors
def to_shelf(last, shelf):
    """Put every face of the last result on the shelf."""
    return last_result_to_shelf(last, shelf, "Make some faces first.")


def build(ctx: Ctx):
    with gr.Tab(TITLE, id=TAB):
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                classes = gr.CheckboxGroup(cz.class_names(), value=["smiling"], label="Classes (all must hold)",
                                           elem_id="cz-classes")
                method = gr.Radio(METHOD_CHOICES, value="zcode", label="Method", elem_id="cz-method")
                count = gr.Slider(1, cz.MAX_FACES, value=8, step=1, label="Count")
                psi = gr.Slider(0, 1.2, value=0.7, step=0.05, label="Truncation ψ")
                seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                check = gr.Radio(CHECK_CHOICES, value="check", label="Check", elem_id="cz-check")
                run = gr.Button("Generate", variant="primary", elem_id="cz-run")
                gr.Markdown(HELP)
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Faces", format="png", columns=4, object_fit="contain", height="auto",
                                     elem_id="cz-gallery")
                note = gr.Markdown(elem_id="cz-note")
                shelf_btn = gr.Button("Send all to shelf", size="sm", elem_id="cz-shelf")
        last = gr.State(None)
    run.click(customize, [classes, method, count, psi, seed, check, ctx.model], [gallery, note, last],
              api_name="customize", **GPU_EVENT)
    shelf_btn.click(to_shelf, [last, ctx.shelf], [ctx.shelf, ctx.shelf_gallery], api_name="customize_to_shelf")

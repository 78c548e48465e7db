"""facegen.world.quality: the layer-by-layer style-mixing probe on the shipped mini."""

import numpy as np

import facegen
from facegen.engine import latents as L
from facegen.engine.synthesis import synthesize
from facegen.world.predictor import load_world_predictor
from facegen.world.quality import mixing_by_layers


def test_mixing_by_layers_follows_the_template_only_as_far_as_layers_are_copied():
    """Baseline measured in the same run, independently of mixing_by_layers: the world predictor's r between
    the unmixed sources and the templates (unrelated faces: measured yaw 0.14, skin tone 0.08). Copying
    layers 0-1 must carry pose and skin tone far beyond it (measured 0.90, 0.95); copying 8-9 must not
    carry pose (0.14)."""
    G, P = facegen.load_generator("mini"), load_world_predictor()
    n, seed = 24, 1000                                    # mixing_by_layers' sources and templates
    r = mixing_by_layers(G, P, groups=[(0, 1), (8, 9)], n=n, seed=seed)
    assert set(r) == {"0-1", "8-9"}
    src = P.predict(synthesize(G, L.seeds_to_ws(G, list(range(seed, seed + n)), psi=0.7)))
    tpl = P.predict(synthesize(G, L.seeds_to_ws(G, list(range(seed + n, seed + 2 * n)), psi=0.7)))
    chance = {k: float(np.corrcoef(src[k], tpl[k])[0, 1]) for k in ("yaw", "skin_tone")}
    for k in ("yaw", "skin_tone"):
        assert r["0-1"][k] > chance[k] + 0.5, (k, r, chance)     # coarse layers: pose and skin follow the template
    assert r["8-9"]["yaw"] < chance["yaw"] + 0.2, (r, chance)   # fine layers: pose stays the source's
    assert mixing_by_layers(G, P, n=8).keys() == {"0-1", "2-3", "4-5", "6-7", "8-9"}

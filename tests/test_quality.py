"""facegen.world.quality: the layer-by-layer style-mixing probe on the shipped mini."""

import facegen
from facegen.world.predictor import load_world_predictor
from facegen.world.quality import mixing_by_layers


def test_mixing_by_layers_follows_the_template_only_as_far_as_layers_are_copied():
    G, P = facegen.load_generator("mini"), load_world_predictor()
    every = tuple(range(G.num_ws))
    r = mixing_by_layers(G, P, groups=[every, (0, 1), (8, 9)], n=24)
    assert set(r) == {f"0-{G.num_ws - 1}", "0-1", "8-9"}
    whole = r[f"0-{G.num_ws - 1}"]                       # copying every layer gives the template itself
    assert min(whole[k] for k in ("bg_corner_rgb", "skin_tone", "yaw", "gender", "hair_length")) > 0.99
    assert whole["hair_color"] == 1.0 and whole["eye_color"] == 1.0
    assert r["8-9"]["yaw"] < 0.6 < r["0-1"]["yaw"]          # pose is a coarse-layer property
    assert mixing_by_layers(G, P, n=8).keys() == {"0-1", "2-3", "4-5", "6-7", "8-9"}

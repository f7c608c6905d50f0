"""plotting: the plate diagram draws what it is given (counted on the matplotlib artists)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle  # noqa: E402

from vae_lite import plotting  # noqa: E402

NODES = {
    "z": (2.0, 2.6, r"$z_i$", False),
    "x": (2.0, 0.9, r"$x_i$", True),
    "theta": (4.3, 0.9, r".$\theta$", False),
    "phi": (4.3, 2.6, r".$\phi$", False),
}


def test_plate_diagram_draws_each_node_edge_and_plate_with_its_style():
    fig, ax = plt.subplots()
    edges = [("z", "x"), ("theta", "x"), ("phi", "z", {"dashed": True}), ("x", "z", {"dashed": True, "bend": -0.5})]
    plotting.plate_diagram(NODES, edges, [(0.5, 0.1, 3.1, 3.4, "$N$")], ax=ax)
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    plates = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(circles) == 2 and len(plates) == 1 and len(arrows) == 4
    shaded = sorted(c.get_facecolor()[0] for c in circles)
    assert shaded[0] < shaded[1]  # the observed x is grey, the latent z white
    styles = [(a.get_linestyle(), a.get_edgecolor()[:3]) for a in arrows]
    assert [s[0] for s in styles] == ["-", "-", "--", "--"]
    assert styles[2][1] != styles[0][1]  # the dashed (q's) arrows are coloured
    assert [a.get_connectionstyle().rad for a in arrows] == [0.0, 0.0, 0.0, -0.5]
    plt.close(fig)


@pytest.mark.parametrize(
    "edge", [("z", "y"), ("z", "x", {"dotted": True})], ids=["unknown node", "unknown style key"]
)
def test_plate_diagram_refuses_an_edge_it_cannot_draw(edge):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="not among"):
        plotting.plate_diagram(NODES, [edge], [], ax=ax)
    plt.close(fig)

"""Synthetic defects stay on the part (a bright disc on black that does not fill the
input), and the target mask marks where the input was changed."""
import torch
import torch.nn.functional as F

from linesight_train.anomalies import content_boxes, corrupt, corrupt_in_crops, crop_origins

VISIBLE = 0.04  # corrupt()'s default: a change the head is asked to find


def disc(n: int, size: int, cy: float, cx: float, r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """n bright textured discs on black, [-1,1] units, and their content mask [n,1,S,S]."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)[None, None].expand(n, 1, size, size).clone()
    texture = 0.4 + 0.3 * torch.rand(n, 1, size, size)
    return torch.where(inside, texture, -1.0), inside


def check_defects(x, xin, m, content):
    """m inside the part; nothing changed off the part; the visible changes inside the mask
    (grown by a pixel: a stroke's soft edge; a few more where a stroke's core is cut off by
    the part's edge); most of each mask visibly changed."""
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert not (m.bool() & ~content).any()
    assert torch.equal(xin[~content.expand_as(x)], x[~content.expand_as(x)])
    marked = m.flatten(1).sum(1) > 0
    assert marked.float().mean() >= 0.3, "defects on the part are visible and marked"
    changed = ((xin - x).abs().amax(1, keepdim=True) > VISIBLE)[marked]
    m = m[marked]
    outside = changed & ~F.max_pool2d(m, 3, 1, 1).bool()
    assert outside.sum() <= 0.01 * changed.sum(), "changed pixels outside their masks"
    hit = (changed & m.bool()).flatten(1).sum(1)
    assert (hit >= 0.3 * m.flatten(1).sum(1)).all(), "a mask is mostly where nothing changed"


def test_defects_stay_on_the_part_and_match_their_masks():
    torch.manual_seed(0)
    x, content = disc(64, 64, 30.0, 34.0, 24.0)
    xin, m = corrupt(x, 1.0, 0.25, 0.0, content)
    check_defects(x, xin, m, content)


def test_defects_in_crops_of_a_larger_input():
    torch.manual_seed(1)
    x, content = disc(32, 128, 40.0, 90.0, 24.0)
    xin, m = corrupt_in_crops(x, content, 64, 1.0, 0.25, 0.0)
    check_defects(x, xin, m, content)


def test_crops_lie_on_the_part():
    torch.manual_seed(2)
    S, c = 128, 32
    _, small = disc(16, S, 40.0, 90.0, 10.0)  # part smaller than the crop: the crop covers it
    _, large = disc(16, S, 64.0, 64.0, 50.0)  # part larger: the crop lies inside its box
    for content in (small, large):
        boxes = content_boxes(content)
        ys, xs = crop_origins(boxes, S, c)
        assert ((ys >= 0) & (xs >= 0) & (ys + c <= S) & (xs + c <= S)).all()
        y0, y1, x0, x1 = boxes.unbind(1)
        for o, a0, a1 in ((ys, y0, y1), (xs, x0, x1)):
            covers = (o <= a0) & (o + c >= a1)
            within = (o >= a0) & (o + c <= a1)
            assert torch.where(a1 - a0 <= c, covers, within).all()

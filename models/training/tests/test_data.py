"""The data-set layout rule (docs/datasets.md) on the cases linesight is tested with too,
and lists relative to the set's root."""
import tomllib
from pathlib import Path

import pytest

from linesight_train.data import defect_kind, find_mask, load_set, read_list

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "dataset_layout.toml"
CASES = tomllib.loads(FIXTURE.read_text())["case"]


def touch(root: Path, rel: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.touch()
    return p


def test_fixture_cases_have_the_shared_keys():
    assert len(CASES) >= 12
    for case in CASES:
        assert set(case) == {"image", "files", "kind", "mask"}, case


# ids name no folder `defect`: the temp root must not hold one above the case's own
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_layout_rule(tmp_path, case):
    image = touch(tmp_path, case["image"])
    for f in case["files"]:
        touch(tmp_path, f)
    assert defect_kind(image) == (case["kind"] or None), case["image"]
    assert find_mask(image) == (tmp_path / case["mask"] if case["mask"] else None), case["image"]


def test_masks_option_replaces_the_mask_folder(tmp_path):
    image = touch(tmp_path, "set/defect/crack/a_1.png")
    touch(tmp_path, "set/masks/crack/a_1.png")
    other = tmp_path / "labels"
    assert find_mask(image, masks_dir=other) is None
    touch(tmp_path, "labels/a_1_mask.png")
    assert find_mask(image, masks_dir=other) == other / "a_1_mask.png"
    touch(tmp_path, "labels/crack/a_1.png")
    assert find_mask(image, masks_dir=other) == other / "crack" / "a_1.png"
    # an image outside any defect folder is looked up flat
    loose = touch(tmp_path, "loose/a_1.png")
    assert find_mask(loose, masks_dir=other) == other / "a_1_mask.png"


def test_list_paths_are_relative_to_the_set_root(tmp_path):
    good = touch(tmp_path, "set/good/a.png")
    crack = touch(tmp_path, "set/defect/crack/b.png")
    absolute = touch(tmp_path, "elsewhere/c.png")
    lst = tmp_path / "set" / "splits" / "test.txt"
    lst.parent.mkdir(parents=True)
    lst.write_text(f"good/a.png\n# a comment\n\n  defect/crack/b.png  \n{absolute}\n")
    assert [p.resolve() for p in read_list(lst)] == [good.resolve(), crack.resolve(), absolute.resolve()]
    # a list named relative to --data, as train.py's --train-list splits/train_good.txt
    listed = load_set("splits/test.txt", tmp_path / "set", "--eval-defect")
    assert [p.resolve() for p in listed] == [good.resolve(), crack.resolve(), absolute.resolve()]
    assert [defect_kind(p) for p in listed] == [None, "crack", None]


def test_list_with_a_missing_image_names_the_root(tmp_path):
    lst = tmp_path / "set" / "splits" / "bad.txt"
    lst.parent.mkdir(parents=True)
    lst.write_text("good/missing.png\n")
    with pytest.raises(SystemExit, match=r"1 of 1 listed images do not exist .*relative to .*set"):
        read_list(lst)


def test_folder_set_lists_images_recursively(tmp_path):
    a = touch(tmp_path, "set/defect/b.PNG")
    b = touch(tmp_path, "set/defect/crack/a.jpg")
    touch(tmp_path, "set/defect/notes.txt")
    assert load_set(str(tmp_path / "set" / "defect"), None, "--eval-defect") == [a, b]

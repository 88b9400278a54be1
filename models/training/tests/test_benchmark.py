"""benchmark.py's command line: which seeds a run trains."""
import argparse

import pytest

from benchmark import seed_list


def test_a_count_is_seeds_from_zero_and_a_list_is_those_seeds():
    assert seed_list("3") == [0, 1, 2]
    assert seed_list("1,2") == [1, 2]


@pytest.mark.parametrize("text", ["0", "-1", "a", "1,x", "1,-2", "0,"])
def test_what_is_not_a_count_or_a_seed_list_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        seed_list(text)

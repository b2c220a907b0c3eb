"""Stored reproductions follow the schema, and the writer writes it atomically."""
import json
from pathlib import Path

import numpy as np
import pytest

from vitools.plots import reproductions

STORED = sorted(reproductions.DEFAULT_DIR.glob("*.json"))


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_every_stored_reproduction_follows_the_schema(path):
    result = reproductions.check_result(json.loads(path.read_text()))
    assert result["name"] == path.stem
    assert result["seconds"] > 0
    seeds = {}
    for run in result["runs"]:
        seeds.setdefault(run["method"], set()).add(run["seed"])
    assert all(len(s) >= 3 for s in seeds.values()), f"every method needs at least 3 seeds, got {seeds}"


def _result(**change):
    base = {"name": "toy", "paper": "1234.5678", "finding": "a beats b", "command": "python x",
            "commit": "abc", "machine": "cpu", "date": "2026-12-01", "seconds": 1.0,
            "metric": "bound (nats, higher is better)", "reference": {"label": "independent pixels", "value": -1.0},
            "runs": [{"method": "a", "seed": 0, "steps": 2, "curve": [[0, -2.0], [2, -0.5]], "final": -0.5}]}
    base.update(change)
    return base


@pytest.mark.parametrize("change,word", [
    ({"paper": None}, None), ({"metric": "bound"}, "metric"), ({"reference": {"label": "x"}}, "reference"),
    ({"runs": []}, "runs"), ({"runs": [{"method": "a"}]}, "seed"),
    ({"runs": [{"method": "a", "seed": 0, "steps": 1, "curve": [[0, float("nan")]], "final": 0.0}]}, "curve"),
])
def test_check_result_names_what_is_wrong(change, word):
    result = _result(**change)
    if word is None:
        del result["paper"]
        word = "paper"
    with pytest.raises(ValueError, match=word):
        reproductions.check_result(result)


def test_writer_writes_atomically_and_validates(tmp_path):
    from bench.reproduce.common import run, write_result

    runs = [run("a", s, 2, [[0, -2.0], [2, -0.5]], -0.5) for s in range(3)]
    path = write_result("toy", "1234.5678", "a beats b", "bound (nats, higher is better)",
                        {"label": "independent pixels", "value": -1.0}, runs, 1.0, results_dir=tmp_path)
    assert json.loads(path.read_text())["runs"][0]["curve"] == [[0, -2.0], [2, -0.5]]
    with pytest.raises(ValueError, match="metric"):
        write_result("bad", "1", "f", "bound", {"label": "x", "value": 0.0}, runs, 1.0, results_dir=tmp_path)
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["toy.json"]        # nothing half-written


def test_load_names_a_missing_reproduction(tmp_path):
    with pytest.raises(ValueError, match="make reproduce-nothing"):
        reproductions.load("nothing", tmp_path)


def test_paired_differences_are_per_seed_digit_by_digit():
    runs = [{"method": m, "seed": s, "per_example": values}
            for m, s, values in (("a", 1, [3.0, 5.0, 4.0]), ("b", 1, [1.0, 2.0, 3.0]),
                                 ("a", 0, [1.0, 1.0, 1.0]), ("b", 0, [2.0, 2.0, 2.0]))]
    result = {"name": "toy", "runs": runs}
    (m0, se0), (m1, se1) = reproductions.paired_differences(result, "a", "b")
    assert (m0, se0) == (-1.0, 0.0)                                      # seed 0 first, whatever the order stored
    assert m1 == 2.0 and abs(se1 - (1.0 / 3 ** 0.5)) < 1e-12              # d = [2, 3, 1]: sd 1
    assert reproductions.paired_differences(result, "b", "a")[1][0] == -2.0
    with pytest.raises(ValueError, match="'c' is not among the runs"):
        reproductions.paired_differences(result, "a", "c")
    with pytest.raises(ValueError, match="different seeds"):
        reproductions.paired_differences({"name": "toy", "runs": runs[:3]}, "a", "b")


def test_draw_finals_puts_every_seed_in_its_methods_column():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from vitools.plots.style import estimator_color

    finals = {"NVIL": np.array([-150.0, -151.0, -152.0]), "ARM": np.array([-145.0, -146.0, -144.0])}
    fig, ax = plt.subplots()
    reproductions.draw_finals(ax, finals, {"label": "independent pixels", "value": -240.0}, offset=0.2,
                              marker="x", label="from the data")
    lines = ax.get_lines()
    columns = [ln for ln in lines if len(ln.get_xdata()) == 3]
    assert [list(ln.get_xdata()) for ln in columns] == [[0.2] * 3, [1.2] * 3]
    assert [list(ln.get_ydata()) for ln in columns] == [list(v) for v in finals.values()]
    assert [ln.get_color() for ln in columns] == [estimator_color("NVIL"), estimator_color("ARM")]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["NVIL", "ARM"]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["from the data", "independent pixels"]
    assert any(list(ln.get_ydata()) == [-240.0, -240.0] for ln in lines)
    fig2, ax2 = plt.subplots()
    reproductions.draw_finals(ax2, finals, errors={"NVIL": [1.0] * 3, "ARM": [2.0] * 3}, tick_labels=False)
    assert len(ax2.containers) == 2 and [t.get_text() for t in ax2.get_xticklabels()] == ["", ""]
    plt.close(fig)
    plt.close(fig2)

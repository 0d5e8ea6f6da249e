"""One plug-in idiom (masktrack.plugins): one registry shape, typed options, one line per bad option."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel

from masktrack.errors import BackendError
from masktrack.plugins import Int, PluginOptions, option_problems
from masktrack.segment.registry import REGISTRY as BACKENDS
from masktrack.segment.registry import load_backend
from masktrack.track.base import Tracker
from masktrack.track.registry import REGISTRY as TRACKERS
from masktrack.track.registry import available_trackers, get_tracker, register_tracker

BUILTIN = [("backend", n) for n in ("classic", "sam2", "sam3")] + [
    ("tracker", n) for n in ("flow", "mvtracker", "cotracker", "spatialtracker")
]


@pytest.mark.parametrize("kind, name", BUILTIN)
def test_every_builtin_declares_a_typed_options_model(kind, name):
    """Importing the class imports no model library; its Options model matches its defaults."""
    cls = (BACKENDS if kind == "backend" else TRACKERS).get_class(name)
    model = cls.Options
    assert isinstance(model, type) and issubclass(model, PluginOptions)
    assert model.model_config["extra"] == "forbid"
    # every bound names a real option (catches an option renamed under its constraint)
    assert set(getattr(model, "__constraints__", ())) <= set(model.model_fields)
    model.model_validate({})  # the defaults validate


@pytest.mark.parametrize(
    "options, where",
    [
        ({"band": True}, "options.band"),  # a bool is not a number
        ({"band": "0.1"}, "options.band"),  # nor is a string
        ({"band": math.nan}, "options.band"),
        ({"sigma": math.inf}, "options.sigma"),
        ({"max_side": -1}, "options.max_side"),
        ({"max_side": 480.0}, "options.max_side"),  # an int option
        ({"refine": 1}, "options.refine"),  # a flag takes true/false only
        ({"flow": "turbo"}, "options.flow"),
        ({"bandd": 0.1}, "options.bandd"),
    ],
)
def test_odd_backend_options_are_rejected_by_name(options, where):
    with pytest.raises(BackendError) as e:
        load_backend("classic", **options)
    lines = e.value.lines()
    assert len(lines) == 1 and lines[0].startswith(f"{where}: "), lines


@pytest.mark.parametrize(
    "options, where",
    [
        ({"win": True}, "options.win"),
        ({"rigidity": -0.5}, "options.rigidity"),
        ({"fb_max_px": math.nan}, "options.fb_max_px"),
        ({"method": "farneback"}, "options.method"),
        ({"keyframe_every": 0}, "options.keyframe_every"),
    ],
)
def test_odd_tracker_options_are_rejected_by_name(options, where):
    with pytest.raises(BackendError) as e:
        get_tracker("flow", **options)
    assert e.value.lines()[0].startswith(f"{where}: ")


def test_good_options_reach_the_class_unchanged():
    b = load_backend("classic", band=0.2, max_side=320, refine=False)
    assert (b.options.band, b.options.max_side, b.options.refine) == (0.2, 320, False)
    t = get_tracker("flow", win=7, method="dis")
    assert (t.options.win, t.options.method) == (7, "dis")


def test_every_bad_option_at_once_in_a_config(tmp_path, colour_video, oracle_mod, capsys):
    from masktrack.cli.main import main

    cfg = oracle_mod.write_job(
        tmp_path,
        [
            {
                "name": "arm",
                "backend": "classic",
                "options": {"band": "abc", "max_side": True, "nope": 1},
                "objects": ["red"],
            }
        ],
        {"red": [oracle_mod.kf("red", 0)]},
    )
    assert main(["segment", str(cfg), "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 3, err
    for opt in ("max_side", "band", "nope"):
        assert any(
            line.startswith(f"masktrack: error: {cfg}: sessions[0:arm].options.{opt}: ") for line in err
        ), err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_plugin_tracker_registers_like_a_backend(monkeypatch):
    class Echo(Tracker):  # Options resolve Int at module level (annotations are strings here)
        name = "echo"

        class Options(PluginOptions):
            step: Int = 1

        def __init__(self, step: int = 1) -> None:
            self.step = step

        def track(self, scene, queries, *, instance=None):  # pragma: no cover - not run here
            raise NotImplementedError

    register_tracker("echo", Echo, "a test tracker")
    try:
        assert "echo" in available_trackers()
        assert get_tracker("echo", step=3).step == 3
        with pytest.raises(BackendError) as e:
            get_tracker("echo", step=False)
        assert e.value.lines()[0].startswith("options.step: ")
    finally:
        TRACKERS.unregister("echo")
    with pytest.raises(BackendError, match="unknown tracker 'echo'"):
        get_tracker("echo")


def test_a_subclass_with_its_own_constructor_is_not_held_to_its_parents_options():
    from masktrack.plugins import declared_options
    from masktrack.segment.classic import ClassicBackend

    class Slow(ClassicBackend):
        def __init__(self, delay: float = 0.1, **options):  # type: ignore[no-untyped-def]
            super().__init__(**options)
            self.delay = delay

    class Same(ClassicBackend):
        pass

    assert declared_options(Slow) is None and declared_options(Same) is ClassicBackend.Options
    BACKENDS.register("slow_test", Slow)
    try:
        assert load_backend("slow_test", delay=0.2, band=0.3).delay == 0.2
    finally:
        BACKENDS.unregister("slow_test")


def test_option_problems_names_unknown_options_with_the_known_ones():
    class M(PluginOptions):
        a: int = 1

    (p,) = option_problems(M, {"b": 2})
    assert p.location == "options.b" and "options: a" in p.message
    assert option_problems(M, {"a": 2}) == []
    assert not issubclass(dict, BaseModel)


def test_option_values_are_json_where_they_parse_and_malformed_items_name_the_flag() -> None:
    from masktrack.errors import ConfigError
    from masktrack.plugins import parse_option_values

    got = parse_option_values(["iters=4", "device=cuda", "pretrained=false", "scale=0.5", "name="])
    assert got == {"iters": 4, "device": "cuda", "pretrained": False, "scale": 0.5, "name": ""}
    for bad in ("iters", "=4"):
        with pytest.raises(ConfigError, match="expected KEY=VALUE") as e:
            parse_option_values([bad], field="-o")
        assert "-o" in str(e.value)

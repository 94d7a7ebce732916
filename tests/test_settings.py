"""The one settings model: every field documented, checked in one place, serialised and replayed; the core
CLI offers every setting under its field name with the same default (the add-on's front ends: test_extension)."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from spritediff_core.cli import build_parser
from spritediff_core.errors import InvalidInputError
from spritediff_core.settings import (
    CONCERN_OF,
    CONCERNS,
    GenerationSettings,
    PackingSettings,
    RuntimeSettings,
    SamplingSettings,
    flag_of,
    read_settings_file,
    settings_from_args,
)

ALL_FIELDS = [(concern, spec) for concern, kind in CONCERNS.items() for spec in fields(kind)]


def other_value(spec):
    """A valid value of the field other than its default."""
    meta, default = spec.metadata, spec.default
    if meta["choices"]:
        return next(choice for choice in meta["choices"] if choice != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        step = meta["multiple_of"] or 1
        for value in (default + step, default + 2 * step, default - step):
            try:
                CONCERNS[CONCERN_OF[spec.name]](**{spec.name: value})
                return value
            except InvalidInputError:
                continue
    if isinstance(default, float):
        return default + 1.5  # 0.5 above 0 would be a guidance scale between "recommended" (0) and "off" (1)
    return "webp"


def test_every_setting_is_documented_with_a_range_or_choices():
    for _, spec in ALL_FIELDS:
        meta = spec.metadata
        assert meta["help"] and len(meta["help"]) > 15, spec.name
        if type(spec.default) in (int, float):
            assert meta["minimum"] is not None and meta["maximum"] is not None, spec.name
        assert spec.default is not None, f"{spec.name}: 'off' must be a value (0, 'auto'), never None"
    assert len(CONCERN_OF) == len(ALL_FIELDS), "field names must be unique across the concerns"


@pytest.mark.parametrize("concern, spec", ALL_FIELDS, ids=[spec.name for _, spec in ALL_FIELDS])
def test_out_of_range_and_wrong_types_are_clear_errors(concern, spec):
    kind = CONCERNS[concern]
    meta = spec.metadata
    bad = ["text"] if not isinstance(spec.default, str) else [3]
    if isinstance(spec.default, float):
        bad += [math.nan, math.inf]
    if type(spec.default) in (int, float):
        bad += [meta["minimum"] - 1, meta["maximum"] + 1]
    if isinstance(spec.default, int) and not isinstance(spec.default, bool):
        bad.append(1.5)
    if meta["choices"]:
        bad.append("no-such-choice")
    for value in bad:
        with pytest.raises(InvalidInputError, match=spec.name):
            kind(**{spec.name: value})
    assert getattr(kind(**{spec.name: other_value(spec)}), spec.name) == other_value(spec)


def test_settings_that_depend_on_each_other():
    assert SamplingSettings(guidance_scale=0).guidance_scale == 0.0  # the model's recommended value
    with pytest.raises(InvalidInputError, match="guidance_scale must be 0"):
        SamplingSettings(guidance_scale=0.5)
    with pytest.raises(InvalidInputError, match="context_overlap"):
        SamplingSettings(context_frames=4, context_overlap=4)
    with pytest.raises(InvalidInputError, match="palette"):
        PackingSettings(palette=1)
    with pytest.raises(InvalidInputError, match="preview formats"):
        PackingSettings(previews="gif,mp4")
    assert PackingSettings(previews="none").preview_formats == ()
    assert PackingSettings(previews="gif, webp").preview_formats == ("gif", "webp")


def test_round_trip_through_json_and_unknown_names_are_refused(tmp_path):
    settings = GenerationSettings().with_flat({"seed": 9, "guidance_scale": 2, "decode_chunk_size": 1,
                                               "layout": "grid", "columns": 4})
    assert settings.sampling.guidance_scale == 2.0 and isinstance(settings.sampling.guidance_scale, float)
    path = tmp_path / "generation.json"
    path.write_text(json.dumps({"files": [], "settings": settings.to_dict()}))
    assert read_settings_file(path) == settings
    with pytest.raises(InvalidInputError, match="unknown settings"):
        GenerationSettings.from_dict({"sampling": {"steps": 3}})
    with pytest.raises(InvalidInputError, match="unknown setting"):
        GenerationSettings().with_flat({"steps": 3})
    path.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        read_settings_file(path)


def parse(command: str, *extra: str):
    required = {"generate": ["--reference", "r.png", "--poses", "p", "--out", "o"], "pack": ["f", "--out", "o"]}
    return build_parser().parse_args([command, *required[command], *extra])


@pytest.mark.parametrize("concern, spec", ALL_FIELDS, ids=[spec.name for _, spec in ALL_FIELDS])
def test_core_cli_offers_every_setting_under_its_name_with_its_default(concern, spec):
    command = "pack" if concern == "packing" else "generate"
    assert settings_from_args(parse(command)) == GenerationSettings()  # nothing given: the defaults
    value = other_value(spec)
    if isinstance(value, bool):
        extra = [flag_of(spec.name) if value else "--no-" + spec.name.replace("_", "-")]
    else:
        extra = [flag_of(spec.name), str(value)]
    changed = settings_from_args(parse(command, *extra))
    assert getattr(getattr(changed, concern), spec.name) == value
    assert changed.with_flat({spec.name: spec.default}) == GenerationSettings()  # only that field changed


def test_the_pipeline_takes_the_runtime_settings():
    from spritediff_core.pipeline import RuntimeSettings as PipelineSettings

    assert PipelineSettings is RuntimeSettings
    assert RuntimeSettings.unoptimised().exact_speedups is False

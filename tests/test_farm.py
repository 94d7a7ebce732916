"""Farm scale: a batch job file as an Open Job Description job bundle (validated by openjd-model, every task
run by openjd-cli on the tiny model, with path mapping) and as a Flamenco job (its job type compiled with Node
against Flamenco's documented job-compiler API)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MOORE_TINY, TINY_WEIGHTS

from spritediff_core import farm
from spritediff_core.errors import InvalidInputError

REFERENCE = MOORE_TINY / "inputs" / "ref.png"
OPENJD = Path(sys.executable).parent / "openjd"
needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy not installed")
needs_openjd = pytest.mark.skipif(not OPENJD.is_file() or importlib.util.find_spec("openjd") is None,
                                  reason="openjd-cli not installed")
NODE = shutil.which("node")


# ---------------------------------------------------------------- the plan, without Blender
def item(character="hero", action="Walk", direction="s", blend="/farm/hero.blend", **settings):
    return farm.FarmItem(character, action, direction, blend, settings)


def test_input_files_become_path_parameters_and_resolve_on_a_worker(tmp_path):
    items = [item(reference_path="/farm/pictures/hero.png", direction_references={"e": "/farm/pictures/side.png"}),
             item(character="ogre", blend="/farm/ogre.blend", reference_path="/farm/pictures/hero.png")]
    plan, table = farm.make_plan("job", items, [farm.FarmCharacter("hero", "/farm/pictures/hero.png")],
                                 "/models/mini", "/farm/out")
    assert not table.per_folder
    assert plan.paths == {"Blend1": "/farm/hero.blend", "Blend2": "/farm/ogre.blend",
                          "Reference1": "/farm/pictures/hero.png", "Reference2": "/farm/pictures/side.png"}
    hero = plan.items[0]
    assert (hero.blend, hero.settings["reference_path"]) == ("Blend1", "Reference1")
    assert hero.settings["direction_references"] == {"e": "Reference2"}
    # a worker's --path wins; otherwise the plan's value
    worker = {"Blend1": "/mnt/farm/hero.blend"}
    assert farm.resolve_path("Blend1", plan.paths, worker, tmp_path) == "/mnt/farm/hero.blend"
    assert farm.resolve_path("Blend2", plan.paths, worker, tmp_path) == "/farm/ogre.blend"
    with pytest.raises(InvalidInputError, match="does not define"):
        farm.resolve_path("Blend9", plan.paths, worker, tmp_path)
    # plan.json round trip
    assert farm.FarmPlan.from_json(json.loads(json.dumps(plan.to_json())), "plan") == plan


def test_many_input_files_fall_back_to_one_parameter_per_folder():
    items = [item(character=f"c{n}", blend=f"/farm/blends/c{n}.blend", reference_path=f"/farm/pictures/c{n}.png")
             for n in range(40)]  # 80 files: more than OpenJD's 50 parameters
    plan, table = farm.make_plan("job", items, [], "", "/out")
    assert table.per_folder and plan.paths == {"Inputs1": "/farm/blends", "Inputs2": "/farm/pictures"}
    assert plan.items[7].blend == "Inputs1/c7.blend" and plan.items[7].settings["reference_path"] == "Inputs2/c7.png"
    assert farm.resolve_path("Inputs1/c7.blend", plan.paths, {"Inputs1": "/w/b"}, Path("/")) == "/w/b/c7.blend"
    too_many = [item(character=f"c{n}", blend=f"/farm/{n}/c.blend") for n in range(60)]
    with pytest.raises(InvalidInputError, match="60 folders"):
        farm.make_plan("job", too_many, [], "", "/out")


def test_template_has_an_int_item_range_so_thousands_of_items_fit():
    items = [item(character=f"c{n % 30}", action=f"A{n}") for n in range(2400)]
    plan, table = farm.make_plan("big", items, [farm.FarmCharacter(f"c{n}", None) for n in range(30)], "", "/out")
    template = farm.openjd_template(plan, table, Path("/bundle"))
    generate, pack = template["steps"]
    assert generate["parameterSpace"]["taskParameterDefinitions"] == [{"name": "Item", "type": "INT",
                                                                       "range": "1-2400"}]
    assert pack["dependencies"] == [{"dependsOn": "Generate"}] and len(pack["parameterSpace"][
        "taskParameterDefinitions"][0]["range"]) == 30
    assert "ModelDir" not in {p["name"] for p in template["parameterDefinitions"]}  # the bundled model


def test_braces_that_openjd_would_read_are_refused():
    with pytest.raises(InvalidInputError, match="'{{'"):
        farm.make_plan("job", [item(action="Walk{{x}}")], [], "", "/out")


def test_path_overrides_need_a_name():
    assert farm.parse_path_overrides(["Blend1=/a=b"]) == {"Blend1": "/a=b"}
    with pytest.raises(InvalidInputError, match="NAME=PATH"):
        farm.parse_path_overrides(["/just/a/path"])


# ---------------------------------------------------------------- a real job file, through Blender's module
@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A studio folder: characters/hero.blend (the spritediff rig), pictures/hero.png and job.toml with two
    characters: hero (idle in 4 directions, w mirrored from e) and ghost (an Action its file lacks: fails)."""
    bpy = pytest.importorskip("bpy")
    from blender_addon import rig_builder

    root = tmp_path_factory.mktemp("studio")
    (root / "characters").mkdir()
    (root / "pictures").mkdir()
    shutil.copy(REFERENCE, root / "pictures" / "hero.png")
    bpy.ops.wm.read_homefile(use_empty=True)
    rig_builder.build_character_scene(bpy.context.scene)
    bpy.ops.wm.save_as_mainfile(filepath=str(root / "characters" / "hero.blend"))
    bpy.ops.wm.read_homefile(use_empty=True)
    (root / "job.toml").write_text(f"""
[defaults]
model = "{TINY_WEIGHTS}"
width = 64
height = 64
num_inference_steps = 1
frames = 2
output_dir = "sprites"
armature = "Character"
reference_path = "pictures/hero.png"

[[character]]
name = "hero"
blend = "characters/hero.blend"
actions = ["Character_idle"]
directions = 4
mirror = "e:w"

[[character]]
name = "ghost"
blend = "characters/hero.blend"
actions = ["Missing"]
""")
    return root


def farm_cli(*args: str) -> int:
    from blender_addon.cli import main

    return main(["farm", *args])


@needs_bpy
def test_openjd_bundle_validates_with_openjd_model(studio, tmp_path):
    from openjd.model import DocumentType, create_job, decode_job_template, document_string_to_object

    assert farm_cli("openjd", str(studio / "job.toml"), "--out", str(tmp_path / "bundle")) == 0
    text = (tmp_path / "bundle" / "template.json").read_text()
    template = decode_job_template(template=document_string_to_object(document=text, document_type=DocumentType.JSON))
    job = create_job(job_template=template, job_parameter_values={})
    generate, pack = job.steps
    assert generate.name == "Generate" and pack.name == "Pack"
    assert len(list(generate.parameterSpace.taskParameterDefinitions["Item"].range)) == 4  # hero s e n, ghost
    assert list(pack.parameterSpace.taskParameterDefinitions["Character"].range) == ["hero", "ghost"]
    parameters = {p["name"]: p for p in json.loads(text)["parameterDefinitions"]}
    assert {name: p["type"] for name, p in parameters.items()} == {
        "Plan": "PATH", "ModelDir": "PATH", "OutputDir": "PATH", "Blender": "STRING", "Blend1": "PATH",
        "Reference1": "PATH"}
    # defaults relative to the bundle (OpenJD joins them to the template's folder)
    assert parameters["Blend1"]["default"] == os.path.relpath(studio / "characters" / "hero.blend", tmp_path / "bundle")
    assert parameters["Plan"]["default"] == "plan.json"
    assert parameters["OutputDir"]["dataFlow"] == "OUT" and parameters["ModelDir"]["dataFlow"] == "IN"
    plan = farm.read_plan(tmp_path / "bundle" / "plan.json")
    assert [i.label for i in plan.items] == ["hero Character_idle s", "hero Character_idle e",
                                            "hero Character_idle n", "ghost Missing"]
    assert plan.items[1].mirrors == ("w",)
    references = json.loads((tmp_path / "bundle" / "asset_references.json").read_text())["assetReferences"]
    assert references["outputs"]["directories"] == [str(studio / "sprites")]
    if OPENJD.is_file():
        check = subprocess.run([str(OPENJD), "check", str(tmp_path / "bundle" / "template.json")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


@needs_bpy
def test_farm_commands_refuse_jobs_a_farm_cannot_run(studio, tmp_path, capsys):
    job = studio / "no_blend.toml"
    job.write_text((studio / "job.toml").read_text().replace('blend = "characters/hero.blend"\nactions = ["Missing"]',
                                                              'actions = ["Missing"]'))
    assert farm_cli("openjd", str(job), "--out", str(tmp_path / "bundle")) == 1
    assert "ghost: a farm worker has no open file" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()
    job.write_text((studio / "job.toml").read_text().replace('name = "ghost"', 'name = "ghost"\noutput_dir = "x"'))
    assert farm_cli("flamenco", str(job), "--out", str(tmp_path / "flamenco")) == 1
    assert "one model and one output_dir" in capsys.readouterr().err
    job.unlink()


def fake_blender(folder: Path) -> Path:
    """Stands in for `blender --background --command spritediff ARGS` where only Blender's Python module is
    installed: the same command line, run as `python -m blender_addon ARGS`."""
    path = folder / "blender"
    path.write_text(f"""#!/bin/sh
[ "$1" = "--background" ] && [ "$2" = "--command" ] && [ "$3" = "spritediff" ] \\
    || {{ echo "not a spritediff command: $*" >&2; exit 2; }}
shift 3
cd "{Path(__file__).parent.parent}" && exec "{sys.executable}" -m blender_addon "$@"
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def openjd_run(template: Path, step: str, task: str, values: dict, mapping: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(OPENJD), "run", str(template), "--step", step, "--task-param", task,
                           "--job-param", json.dumps(values), "--path-mapping-rules", f"file://{mapping}"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_bpy
@needs_openjd
def test_openjd_runs_every_task_on_a_worker_that_sees_other_paths(studio, tmp_path):
    """The job is submitted with the workstation's paths (as Deadline Cloud records them); the worker sees the
    studio folder elsewhere and the farm's path mapping rules say so. Every Generate task and the Pack task run;
    a rerun changes nothing; the failing item says which it is and the others still complete."""
    assert farm_cli("openjd", str(studio / "job.toml"), "--out", str(studio / "bundle")) == 0
    worker_root = tmp_path / "mount" / "studio"
    shutil.copytree(studio, worker_root)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "POSIX", "source_path": str(studio), "destination_path": str(worker_root)}]}))
    template = worker_root / "bundle" / "template.json"
    values = {"Blender": str(fake_blender(tmp_path)), "Plan": str(studio / "bundle" / "plan.json"),
              "ModelDir": str(TINY_WEIGHTS), "OutputDir": str(studio / "sprites"),
              "Blend1": str(studio / "characters" / "hero.blend"), "Reference1": str(studio / "pictures" / "hero.png")}
    results = {number: openjd_run(template, "Generate", f"Item={number}", values, mapping) for number in (1, 2, 3, 4)}
    for number in (1, 2, 3):
        assert results[number].returncode == 0, results[number].stdout[-3000:]
    assert results[4].returncode != 0
    assert "farm item 4 of 4 (ghost Missing) failed" in results[4].stdout
    sprites = worker_root / "sprites" / "hero"
    assert sorted(p.name for p in sprites.iterdir()) == ["idle_e", "idle_n", "idle_s", "idle_w"]
    assert not (studio / "sprites").exists()  # everything landed on the worker's side of the mapping
    assert json.loads((sprites / "idle_w" / "frames" / "generation.json").read_text())["mirrored_from"] == "idle_e"
    # a rerun of a task rewrites its own outputs identically and leaves everything else alone
    (sprites / "notes.txt").write_text("the artist's own file")
    before = tree(sprites)
    assert openjd_run(template, "Generate", "Item=2", values, mapping).returncode == 0
    assert tree(sprites) == before
    # the Pack step: the character's sheet of every animation its tasks wrote
    packed = openjd_run(template, "Pack", "Character=hero", values, mapping)
    assert packed.returncode == 0, packed.stdout[-3000:]
    sheet = json.loads((sprites / "sheet" / "hero_atlas.json").read_text())
    assert sorted(sheet["animations"]) == ["idle_e", "idle_n", "idle_s", "idle_w"]
    first_sheet = tree(sprites / "sheet")
    assert openjd_run(template, "Pack", "Character=hero", values, mapping).returncode == 0
    assert tree(sprites / "sheet") == first_sheet and (sprites / "notes.txt").is_file()
    # the last task of both steps: ghost's sheet has nothing to pack, since its one item failed
    ghost = openjd_run(template, "Pack", "Character=ghost", values, mapping)
    assert ghost.returncode != 0 and "farm pack of ghost failed" in ghost.stdout


# ---------------------------------------------------------------- Flamenco
FLAMENCO_HARNESS = """
// Flamenco's job-compiler API as documented (flamenco.blender.org/usage/job-types): author.Task(name, type),
// task.addCommand(author.Command(type, parameters)), task.addDependency(task), job.addTask(task).
const fs = require("fs"), vm = require("vm");
const [script, submissionPath] = process.argv.slice(2);
const submission = JSON.parse(fs.readFileSync(submissionPath, "utf8"));
const tasks = [];
const author = {
    Task: (name, type) => {
        const task = {name, type, commands: [], dependencies: []};
        task.addCommand = (command) => task.commands.push(command);
        task.addDependency = (other) => task.dependencies.push(other.name);
        return task;
    },
    Command: (type, parameters) => ({type, parameters}),
};
const context = vm.createContext({author, JSON, String, Array, Error});
const exported = "\\nthis.JOB_TYPE = JOB_TYPE; this.compileJob = compileJob;";
vm.runInContext(fs.readFileSync(script, "utf8") + exported, context);
const job = {settings: submission.settings, addTask: (task) => tasks.push(task)};
context.compileJob(job);
const strip = ({addCommand, addDependency, ...rest}) => rest;
console.log(JSON.stringify({jobType: context.JOB_TYPE, tasks: tasks.map(strip)}));
"""


@needs_bpy
@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_flamenco_job_type_compiles_one_task_per_item_and_a_pack_task_each(studio, tmp_path):
    assert farm_cli("flamenco", str(studio / "job.toml"), "--out", str(tmp_path / "flamenco")) == 0
    submission = json.loads((tmp_path / "flamenco" / "flamenco_job.json").read_text())
    assert submission["type"] == "spritediff" and (tmp_path / "flamenco" / "spritediff.js").is_file()
    harness = tmp_path / "harness.js"
    harness.write_text(FLAMENCO_HARNESS)
    compiled = subprocess.run([NODE, str(harness), str(farm.FLAMENCO_JOB_TYPE), str(tmp_path / "flamenco" /
                                                                                    "flamenco_job.json")],
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    result = json.loads(compiled.stdout)
    assert {s["key"] for s in result["jobType"]["settings"]} == set(submission["settings"])
    tasks = {task["name"]: task for task in result["tasks"]}
    assert list(tasks) == ["generate hero Character_idle s", "generate hero Character_idle e",
                           "generate hero Character_idle n", "generate ghost Missing", "pack hero", "pack ghost"]
    plan = str(tmp_path / "flamenco" / "plan.json")
    blend = str(studio / "characters" / "hero.blend")
    command = tasks["generate hero Character_idle e"]["commands"][0]
    assert command["type"] == "blender-render" and tasks["generate hero Character_idle e"]["type"] == "blender"
    assert command["parameters"] == {
        "exe": "{blender}", "exeArgs": "{blenderArgs}", "argsBefore": [], "blendfile": blend,
        "args": ["--command", "spritediff", "farm", "task", plan, "--item", "2", "--model", str(TINY_WEIGHTS),
                 "--out", str(studio / "sprites")]}
    assert tasks["pack hero"]["dependencies"] == ["generate hero Character_idle s", "generate hero Character_idle e",
                                                  "generate hero Character_idle n"]
    assert tasks["pack ghost"]["dependencies"] == ["generate ghost Missing"]
    assert tasks["pack hero"]["commands"][0]["parameters"]["args"][3:7] == ["pack", plan, "--character", "hero"]

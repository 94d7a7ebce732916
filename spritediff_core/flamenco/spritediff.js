// spritediff job type for Flamenco 3: sprites for every character, Action and direction of a batch job file.
//
// Install: copy this file into the `scripts/` folder beside the flamenco-manager executable and restart the
// Manager. Submit: `blender --command spritediff farm flamenco JOB.toml --out FOLDER` writes FOLDER/plan.json
// and FOLDER/flamenco_job.json; POST the latter to the Manager's /api/v3/jobs.
//
// Tasks: one "generate" task per plan item (a character's Action in one direction), then one "pack" task per
// character (its sprite sheet), which waits for every generate task of that character. Every task runs
// Blender in the background with the spritediff extension's command:
//   {blender} {blenderArgs} <character.blend> --command spritediff farm task <plan.json> --item N --out <output>
//   {blender} {blenderArgs} <character.blend> --command spritediff farm pack <plan.json> --character NAME --out <output>

const JOB_TYPE = {
    label: "spritediff sprites",
    description: "Sprite frames and sheets from a spritediff farm plan",
    settings: [
        {key: "plan", type: "string", subtype: "file_path", required: true,
         description: "plan.json written by `spritediff farm flamenco`"},
        {key: "output_dir", type: "string", subtype: "dir_path", required: true,
         description: "sprites land in <output_dir>/<character>/<animation>, sheets in <output_dir>/<character>/sheet"},
        {key: "model_dir", type: "string", subtype: "dir_path", required: false, default: "",
         description: "the weights folder; empty for the bundled spritediff-mini"},
        {key: "items", type: "string", required: true, visible: "hidden",
         description: "JSON list of the plan's items: {label, character, blend}, in plan order"},
        {key: "characters", type: "string", required: true, visible: "hidden",
         description: "JSON list of the characters: {name, blend}"},
    ],
};

function spritediffCommand(blend, farmArgs, settings) {
    const args = ["--command", "spritediff", "farm"].concat(farmArgs);
    if (settings.model_dir) {
        args.push("--model", settings.model_dir);
    }
    args.push("--out", settings.output_dir);
    return author.Command("blender-render", {
        exe: "{blender}",
        exeArgs: "{blenderArgs}",
        argsBefore: [],
        blendfile: blend,
        args: args,
    });
}

function parseList(settings, key) {
    let value;
    try {
        value = JSON.parse(settings[key]);
    } catch (error) {
        throw new Error(`spritediff: setting '${key}' is not JSON: ${error}`);
    }
    if (!Array.isArray(value) || value.length === 0) {
        throw new Error(`spritediff: setting '${key}' must be a non-empty JSON list`);
    }
    return value;
}

function compileJob(job) {
    const settings = job.settings;
    const items = parseList(settings, "items");
    const characters = parseList(settings, "characters");
    const generated = {};  // character name -> its generate tasks
    items.forEach((item, index) => {
        const task = author.Task(`generate ${item.label}`, "blender");
        task.addCommand(spritediffCommand(item.blend, ["task", settings.plan, "--item", String(index + 1)], settings));
        job.addTask(task);
        (generated[item.character] = generated[item.character] || []).push(task);
    });
    for (const character of characters) {
        const tasks = generated[character.name] || [];
        if (tasks.length === 0) {
            throw new Error(`spritediff: character '${character.name}' has no items to pack`);
        }
        const pack = author.Task(`pack ${character.name}`, "blender");
        pack.addCommand(spritediffCommand(character.blend, ["pack", settings.plan, "--character", character.name],
                                          settings));
        for (const task of tasks) {
            pack.addDependency(task);
        }
        job.addTask(pack);
    }
}

"""`kolm_artifact`: compiles one task of a Kolmfile into `<task>.kolm` as a Bazel action.

The action is hermetic: every file the build reads is a declared input (`kolmfile`, `srcs`,
and `kolmbuild` itself), the outputs are declared (`<task>.kolm`, `<task>.report.json`), kolm's
state lives in a fresh temporary KOLM_HOME (Bazel's action cache, and its remote cache, take
the place of kolm's), no variable of the user's environment reaches it, and the Kolmfile.lock
is read, never written (`--locked`). kolmbuild also checks the declared inputs itself
(`--declared-inputs`): a file the build reads but `srcs` lacks is an error even under
`--spawn_strategy=local`, not only in the sandbox.

Signing: `signing_key_file` (a file whose UTF-8 contents are the key) is an input read inside
the action, so the key never enters the action's command line or environment (which Bazel
would hash into cache keys and send to a remote executor); such actions are tagged
`no-remote-exec` so the key file stays on this machine. Without it, `unsigned = True` is
required.
"""

def _kolm_artifact_impl(ctx):
    task = ctx.attr.task or ctx.label.name
    artifact = ctx.actions.declare_file(task + ".kolm")
    report = ctx.actions.declare_file(task + ".report.json")
    declared = ctx.actions.declare_file(ctx.label.name + ".inputs")
    srcs = ctx.files.srcs
    ctx.actions.write(declared, "\n".join([ctx.file.kolmfile.path] + [f.path for f in srcs]) + "\n")
    if not ctx.attr.unsigned and not ctx.file.signing_key_file:
        fail("kolm_artifact %s: give signing_key_file, or unsigned = True" % ctx.label)
    inputs = [ctx.file.kolmfile, declared] + srcs
    key = ""
    if ctx.file.signing_key_file:
        inputs.append(ctx.file.signing_key_file)
        key = 'KOLM_SIGNING_KEY="$(cat "%s")"; export KOLM_SIGNING_KEY; ' % ctx.file.signing_key_file.path
    flags = ["--locked"] if ctx.attr.locked else []
    if ctx.attr.unsigned:
        flags.append("--unsigned")
    if ctx.attr.gate:
        flags += ["--gate", ctx.attr.gate]
    command = (
        'set -eu; home="$(mktemp -d)"; trap \'rm -rf "$home"\' EXIT; ' + key +
        'KOLM_HOME="$home" "$1" -f "$2" --task "$3" --dist "$4" --declared-inputs "$5" ' +
        '--quiet ' + " ".join(flags)
    )
    ctx.actions.run_shell(
        command = command,
        arguments = [
            ctx.executable.kolmbuild.path,
            ctx.file.kolmfile.path,
            task,
            artifact.dirname,
            declared.path,
        ],
        inputs = inputs,
        tools = [ctx.executable.kolmbuild],
        outputs = [artifact, report],
        env = {"PATH": "/usr/bin:/bin", "SOURCE_DATE_EPOCH": ctx.attr.source_date_epoch},
        mnemonic = "Kolm",
        progress_message = "Compiling %s into %s" % (ctx.file.kolmfile.short_path, artifact.short_path),
        execution_requirements = {"no-remote-exec": "1"} if ctx.file.signing_key_file else {},
    )
    return [DefaultInfo(files = depset([artifact]), runfiles = ctx.runfiles(files = [artifact, report]))]

kolm_artifact = rule(
    implementation = _kolm_artifact_impl,
    attrs = {
        "kolmfile": attr.label(allow_single_file = [".toml"], mandatory = True, doc = "The Kolmfile."),
        "srcs": attr.label_list(allow_files = True, doc = "Every file the build reads besides the Kolmfile: seeds, evals, corpus, recipes, schema, a local base, a cassette, Kolmfile.lock."),
        "task": attr.string(doc = "The task to compile (default: the target's name)."),
        "kolmbuild": attr.label(default = "@kolm//:kolmbuild", executable = True, cfg = "exec", allow_single_file = True),
        "unsigned": attr.bool(default = False),
        "signing_key_file": attr.label(allow_single_file = True),
        "locked": attr.bool(default = True, doc = "Refuse to change Kolmfile.lock (it cannot be written from a sandbox)."),
        "gate": attr.string(doc = "Override the ship gate (a number between 0 and 1)."),
        "source_date_epoch": attr.string(default = "0", doc = "The zip timestamps: fixed, so the artifact is byte-reproducible."),
    },
    doc = "Compiles one task of a Kolmfile into <task>.kolm (and its report).",
)

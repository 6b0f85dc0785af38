"""`kolm_register`: makes a `kolmbuild` binary available to the build as `@<name>//:kolmbuild`."""

def _kolm_register_impl(rctx):
    path = rctx.attr.kolmbuild or rctx.os.environ.get("KOLMBUILD", "")
    if not path:
        found = rctx.which("kolmbuild")
        path = str(found) if found else ""
    if not path:
        fail("kolmbuild not found: put it on PATH, set KOLMBUILD=/path/to/kolmbuild, " +
             "or give kolm_register(kolmbuild = ...)")
    # Bazel digests an action's inputs by content, through the link: a new kolm binary changes
    # every kolm action's key, and a remote executor receives the file itself.
    rctx.symlink(path, "kolmbuild")
    rctx.file("BUILD.bazel", 'exports_files(["kolmbuild"])\n')

kolm_register = repository_rule(
    implementation = _kolm_register_impl,
    attrs = {
        "kolmbuild": attr.string(doc = "Absolute path of kolmbuild (default: $KOLMBUILD, then PATH)."),
    },
    environ = ["KOLMBUILD", "PATH"],
    local = True,
    doc = "Finds kolmbuild on this machine and exposes it as @<name>//:kolmbuild.",
)

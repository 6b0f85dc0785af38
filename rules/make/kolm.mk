# kolm.mk: build .kolm artifacts from GNU Make, with every input known to Make.
#
#   KOLMFILES := triage/Kolmfile.toml            # one or more Kolmfiles
#   include path/to/rules/make/kolm.mk
#   all: triage/dist/support-triage.kolm         # <Kolmfile's folder>/dist/<task>.kolm
#
# For each Kolmfile, `<its folder>/$(KOLM_DIST)/%.kolm` is built by
# `kolmbuild -f <Kolmfile> --depfile <its folder>/$(KOLM_DIST)/.kolm.d`. kolmbuild writes that
# depfile as gcc -MD -MP does: for every artifact, each file and folder its build reads (seeds,
# evals, corpus files and their folders, recipes, a schema file, a local base, a cassette), and
# an empty rule per input so a deleted input makes the artifact stale rather than stopping
# Make. Make includes it, so `make` rebuilds exactly when an input changed and `make -q`
# answers "up to date" otherwise. Within a rebuild, kolmbuild's own cache reruns only the
# stages the change reaches.
#
# The artifact is touched after a successful build: an edit that leaves the artifact
# byte-identical (kolmbuild then leaves the file alone) must still make it newer than the
# edited input, or Make would rebuild it every time.
#
# Variables: KOLMBUILD (the binary), KOLMFLAGS (e.g. --locked), KOLM_DIST (the Kolmfile's
# `[project] dist`, default dist). Several artifacts of one Kolmfile under `make -j` are safe:
# kolmbuild takes a per-project lock, and the second finds the first one's work cached.

KOLMBUILD ?= kolmbuild
KOLMFLAGS ?=
KOLMFILES ?= Kolmfile.toml
KOLM_DIST ?= dist

# `<folder>/dist` for `<folder>/Kolmfile.toml`, `dist` for `Kolmfile.toml` (Make names a
# target as it was written, so no leading `./`).
kolm_dist_of = $(patsubst ./%,%,$(dir $(1))$(KOLM_DIST))

define kolm_rules
$(call kolm_dist_of,$(1))/%.kolm: $(1)
	$$(KOLMBUILD) -f $(1) --depfile $(call kolm_dist_of,$(1))/.kolm.d $$(KOLMFLAGS)
	@touch -c $$@

-include $(call kolm_dist_of,$(1))/.kolm.d
endef

# The depfiles' rules must not become the default goal: the including Makefile's own first
# target (usually `all`) stays it.
kolm_saved_goal := $(.DEFAULT_GOAL)
$(foreach k,$(KOLMFILES),$(eval $(call kolm_rules,$(k))))
.DEFAULT_GOAL := $(kolm_saved_goal)

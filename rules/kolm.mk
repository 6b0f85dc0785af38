# kolm.mk: build a .kolm from Make. Include it and name your Kolmfiles:
#
#   KOLMFILES := triage/Kolmfile.toml
#   include rules/kolm.mk
#   all: kolm-artifacts
#
# kolmbuild does its own precise invalidation (content digests, early cutoff), so Make only
# needs to call it; this rule re-runs it whenever any file under the Kolmfile's folder is newer
# than the stamp, and kolmbuild itself decides, in milliseconds, what actually has to run.

KOLMBUILD ?= kolmbuild
KOLMFILES ?= Kolmfile.toml

kolm_dir = $(patsubst %/,%,$(dir $(1)))
kolm_stamp = $(call kolm_dir,$(1))/.kolm-stamp

define kolm_rule
$(call kolm_stamp,$(1)): $(1) $$(shell find $(call kolm_dir,$(1)) -type f -not -path '*/dist/*' -not -name '.kolm-stamp')
	$$(KOLMBUILD) -f $(1)
	@touch $$@
endef

$(foreach k,$(KOLMFILES),$(eval $(call kolm_rule,$(k))))

.PHONY: kolm-artifacts
kolm-artifacts: $(foreach k,$(KOLMFILES),$(call kolm_stamp,$(k)))

# fmriscaling: scaling laws of fMRI encoding models (language, speech, vision; data size).
# Table of contents only: the Study and its input functions live in rules/common.smk, one .smk
# per stage.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "rules/report/workflow.rst"


include: "rules/common.smk"
include: "rules/synthetic.smk"
include: "rules/download.smk"
include: "rules/stimuli.smk"
include: "rules/features.smk"
include: "rules/encoding.smk"
include: "rules/noise_ceiling.smk"
include: "rules/stacking.smk"
include: "rules/partition.smk"
include: "rules/figures.smk"
include: "rules/vision.smk"
include: "rules/surface.smk"


rule all:
    default_target: True
    input:
        over(STUDY.final_targets),

# rohydr: RoHyDR on MMSA feature pickles, from validation to paper-style tables.
# The rules live in workflow/rules/, one file per stage; the work is done by the `rohydr` command.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config/config.yaml"


include: "workflow/rules/config.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),

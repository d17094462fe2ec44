# Entry point for `snakemake` run from the repository root. The workflow itself is
# workflow/Snakefile (the layout the Snakemake workflow catalogue expects); see README.md.


include: "workflow/Snakefile"


# An included file's default target does not carry over: `snakemake` alone builds `all`.
localrules:
    default,


rule default:
    default_target: True
    input:
        rules.all.input,

# Tables and figures of the paper, each in the Snakemake report with a caption. They take seconds, so they run
# on the submit host instead of waiting for a SLURM slot.


localrules:
    table3_scaling,
    scaling_figure,


rule table3_scaling:
    input:
        scaling_points(),
    output:
        csv=report(
            "results/tables/table3_scaling.csv",
            caption="../report/table3_scaling.rst",
            category="Table III: generator scaling",
            labels={"table": "III", "format": "csv"},
        ),
        md="results/tables/table3_scaling.md",
    log:
        "logs/table3_scaling.log",
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/table3_scaling.py"


rule scaling_figure:
    input:
        "results/tables/table3_scaling.csv",
    output:
        report(
            "results/figures/scaling.png",
            caption="../report/scaling.rst",
            category="Table III: generator scaling",
            labels={"figure": "scaling"},
        ),
    log:
        "logs/scaling_figure.log",
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/scaling_figure.py"

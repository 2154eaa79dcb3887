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


localrules:
    table1_read_throughput,
    table2_generation_throughput,
    utilisation_figure,
    dice_figure,


rule table1_read_throughput:
    input:
        experiment_metrics(),
    output:
        csv=report(
            "results/tables/table1_read_throughput.csv",
            caption="../report/table1.rst",
            category="Tables I-II: training throughput",
            labels={"table": "I", "format": "csv"},
        ),
        md="results/tables/table1_read_throughput.md",
    log:
        "logs/table1_read_throughput.log",
    params:
        table="table1",
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/training_tables.py"


rule table2_generation_throughput:
    input:
        experiment_metrics(),
    output:
        csv=report(
            "results/tables/table2_generation_throughput.csv",
            caption="../report/table2.rst",
            category="Tables I-II: training throughput",
            labels={"table": "II", "format": "csv"},
        ),
        md="results/tables/table2_generation_throughput.md",
    log:
        "logs/table2_generation_throughput.log",
    params:
        table="table2",
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/training_tables.py"


rule utilisation_figure:
    input:
        experiment_metrics(),
    output:
        report(
            "results/figures/utilisation.png",
            caption="../report/utilisation.rst",
            category="Figures: utilisation and Dice",
            labels={"figure": "utilisation"},
        ),
    log:
        "logs/utilisation_figure.log",
    params:
        figure="utilisation",
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/training_figures.py"


rule dice_figure:
    input:
        experiment_metrics(),
    output:
        report(
            "results/figures/dice.png",
            caption="../report/dice.rst",
            category="Figures: utilisation and Dice",
            labels={"figure": "dice"},
        ),
    log:
        "logs/dice_figure.log",
    params:
        figure="dice",
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/training_figures.py"

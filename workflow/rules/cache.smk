# Table III: the generator scaling sweep. One job per generator count N runs the swap manager plus N generators
# against its own database on the experiment's server for a fixed window and measures the samples committed to
# the read collection per second (from swap events). The generators are emulated (a sleep per sample) or, with
# scaling.generator: brain, the real brain generator of training.brain.


rule scaling_point:
    input:
        uri=SERVER_URI,
        previous=after_previous_point,
    output:
        f"results/{EXP}/scaling/n{{n}}.json",
    log:
        f"logs/{EXP}/scaling/n{{n}}.log",
    params:
        workdir=f"results/{EXP}/scaling/n{{n}}",
        database=scaling_database,
        swap_cap=config["cache"]["swap_cap"],
        shape=config["cache"]["shape"],
        duration_s=config["scaling"]["duration_s"],
        startup_timeout_s=config["scaling"]["startup_timeout_s"],
        emulated_cost_s=config["scaling"]["emulated_cost_s"],
        generator=config["scaling"].get("generator", "emulated"),
        brain=TRAINING.get("brain", {}),
        source=TRAINING.get("source", "wirehead_core.brain:source"),
        fail=scaling_fails,
    threads: scaling_threads
    resources:
        cpus_per_task=scaling_threads,
        mem_mb=scaling_mem_mb,
        runtime=scaling_runtime,
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/scaling_point.py"

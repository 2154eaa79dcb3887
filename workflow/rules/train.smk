# Training experiments (Tables I-II, utilisation and Dice figures), one per enabled entry of
# training.experiments: coupled (generation inline), local wirehead (manager and generators inside the training
# job) and distributed wirehead (manager and generators as separate jobs: a local rule starts them, as for the
# server, because a normal rule would block until they exit; pool_stop ends them once training is done).


localrules:
    pool_start,
    pool_stop,


rule pool_start:
    input:
        uri=SERVER_URI,
        previous=after_previous_experiment,
    output:
        f"{TRAIN_DIR}/pool.ready",
    log:
        f"logs/{EXP}/train/{{name}}/pool_start.log",
    params:
        spec=experiment_spec,
        training=TRAINING,
        workdir=TRAIN_DIR,
        database=experiment_database,
        record=lambda w: pool_record(w.name),
        launcher=server_launcher,
        job_name=lambda w: f"wirehead-pool-{EXP}-{w.name}",
    # Resources of each array task of the pool's SLURM job (this rule itself only submits it and waits).
    resources:
        cpus_per_task=TRAINING.get("pool", {}).get("cpus_per_task", 1),
        mem_mb=TRAINING.get("pool", {}).get("mem_mb", 2000),
        gpu=TRAINING.get("pool", {}).get("gpus", 0),
        runtime=train_runtime,
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/pool_start.py"


rule train_experiment:
    input:
        uri=SERVER_URI,
        ready=pool_ready,
    output:
        f"{TRAIN_DIR}/metrics.json",
    log:
        f"logs/{EXP}/train/{{name}}/train.log",
    params:
        spec=experiment_spec,
        training=TRAINING,
        workdir=TRAIN_DIR,
        database=experiment_database,
        fail=lambda w: config.get("fail_experiment") == w.name,
    threads: train_threads
    resources:
        cpus_per_task=train_threads,
        mem_mb=TRAINING.get("mem_mb", 4000),
        gpu=TRAINING.get("gpus", 0),
        gpu_model=TRAINING.get("gpu_model") or "",
        runtime=train_runtime,
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/train_experiment.py"


rule pool_stop:
    input:
        f"{TRAIN_DIR}/metrics.json",
    output:
        f"{TRAIN_DIR}/pool.stopped",
    log:
        f"logs/{EXP}/train/{{name}}/pool_stop.log",
    params:
        python=PYTHON,
        script=SERVER_STOP_SCRIPT,
        record=lambda w: pool_record(w.name),
    conda:
        "../envs/wirehead.yaml"
    shell:
        "{params.python} {params.script} --record {params.record} --done {output} > {log} 2>&1"

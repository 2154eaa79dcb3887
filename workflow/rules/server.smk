# The database server of one experiment: started before the sweep, stopped after everything that uses it.
# Locally it is a background process (`wirehead server start`). On SLURM it is its own sbatch job, submitted from
# this local rule: a normal SLURM rule would block until the server exits, and service() jobs cannot span
# separate sbatch jobs. The URI file appears only once the server answers; its job is scancelled by the teardown
# rule and by onerror/onsuccess.


localrules:
    server_start,
    server_stop,


rule server_start:
    output:
        uri=temp(SERVER_URI),
    log:
        f"logs/{EXP}/server_start.log",
    params:
        dir=SERVER_DIR,
        record=SERVER_RECORD,
        launcher=server_launcher,
        job_name=f"wirehead-server-{EXP}",
        ready_timeout_s=config["server"]["ready_timeout_s"],
        bind=config["server"].get("bind", "127.0.0.1"),
    # Resources of the server's own SLURM job (this rule itself only submits it and waits).
    resources:
        mem_mb=2000,
        cpus_per_task=1,
        runtime=config["server"]["max_runtime_min"],
    conda:
        "../envs/wirehead.yaml"
    script:
        "../scripts/server_start.py"


rule server_stop:
    input:
        uri=SERVER_URI,
        users=scaling_points() + experiment_metrics() + pools_stopped(),
    output:
        SERVER_STOPPED,
    log:
        f"logs/{EXP}/server_stop.log",
    params:
        python=PYTHON,
        script=SERVER_STOP_SCRIPT,
        record=SERVER_RECORD,
    conda:
        "../envs/wirehead.yaml"
    shell:
        "{params.python} {params.script} --record {params.record} --done {output} > {log} 2>&1"

# Training experiments (Tables I-II, GPU-utilisation and Dice figures): the next increment of issue 4.
#
# `wirehead train --config C --mode coupled|wirehead --budget B --output-dir D` and `wirehead trace` exist in
# wirehead_core/train.py and tracer.py, but they are still being written; the rules below will call them once they
# settle. Planned, per experiment (paths are the placeholders named in `rule all`):
#
#   rule train_coupled:    generator inside the training loop (the baseline), one GPU job
#       output: results/{exp}/train/coupled/metrics.csv
#   rule train_wirehead:   trainer reading the cache that config["train"]["generators"] generators fill through
#                          the experiment's server (input: SERVER_URI, so server_stop waits for it too)
#       output: results/{exp}/train/wirehead/metrics.csv
#       resources: gpu=1, gpu_model=config["train"]["gpu_model"] (A100-class in config/paper.yaml),
#                  runtime from config["train"]["budget_s"]; partitions and accounts stay in the profile
#   rule trace_gpu:        `wirehead trace` beside each training job -> results/{exp}/train/{mode}/gpu.csv
#   rule table1_throughput -> results/tables/table1_throughput.{csv,md}
#   rule table2_dice       -> results/tables/table2_dice.{csv,md}
#   rule gpu_figure        -> results/figures/gpu_utilisation.png
#   rule dice_figure       -> results/figures/dice.png

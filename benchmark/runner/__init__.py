"""The runner: the `run` command (`main`), the worker that claims and trains runs (`worker`),
claim files (`claims`) and Weights & Biases (`tracking`)."""

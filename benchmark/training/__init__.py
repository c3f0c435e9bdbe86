"""Training: a pack of runs (`pack`), its epoch loop (`train`), the step (`step`) captured as a
CUDA graph (`graphs`), stacked runs (`stack`), resume and fork files (`resume`), checkpoints."""

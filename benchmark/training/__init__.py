"""Training: one pack of runs (`train`), its step (`step`), captured as a CUDA graph (`graphs`),
stacked runs (`stack`) and checkpoints (`checkpoint`)."""

"""Learning: the block model and its LoRA, tasks, batches, partitions, metrics and profiling; torch, never Ray."""

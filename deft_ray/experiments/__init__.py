"""Studies and reports: planner sweeps, their tables and figures, run plots and plan printouts; no torch, no Ray."""

"""A training run: its flag groups and derived plan (config), the recipes and LR schedule, the
checkpointer, the evaluator and the loop (train)."""

"""Equal-budget tuning (docs/tuning.md): the Optuna study of one method on its declared search space
(`unlearn-bench-tune`) and the summary of the studies from their trial records (`unlearn-bench-tuning-summary`).
It drives the runner, so it sits above it: nothing in the package imports it."""

"""Evidence: scoring a run on its test split, the verdict on distillation, calibration, attributions, CKA."""

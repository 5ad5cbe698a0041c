"""Training: feedback -> datasets -> LoRA adapters -> eval gate -> registry."""

"""Fast paths of the model's operations (ops) and the fused CPU kernels they use (cpu)."""

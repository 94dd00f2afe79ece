"""fer_jax: facial expression recognition in JAX/Flax."""

"""The model registry: versions and aliases in storage, manifests, and weights in safetensors."""

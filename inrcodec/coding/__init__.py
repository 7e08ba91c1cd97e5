"""The coding maths: quantizers, entropy coders and bit packing of latent symbols."""

"""Recipe files (TOML), shipped inside the package as ``inrcodec._recipes``."""

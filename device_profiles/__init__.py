"""Device profiles: TOML data files holding the limits and defaults of each kind of device."""

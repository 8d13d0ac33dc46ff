"""Users and devices: account data, tags, filters, profiles, devices, passwords."""

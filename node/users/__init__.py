"""The user's own data on the node: account data and room tags, stored filters,
profile fields (and their propagation into rooms), with the /sync part for account
data. Devices, tokens and passwords live in :mod:`node.accounts`."""

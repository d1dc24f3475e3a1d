"""One module per generation stage, each named as its stage (the names in job events and progress)."""
